#!/usr/bin/env bash
# Issue 17's compute workloads, ours against dask.array, alternating, ROUNDS rounds (default
# 3), medians. Ours: the whole command (`array EXPR --local 2 --threads 1`, cluster start
# included), release build. Dask: compute only, on a warm LocalCluster of 2 x 1 thread.
# Each side starts from a clean environment (`env -i`): a LocalCluster sets
# MALLOC_TRIM_THRESHOLD_ in its parent's environment, and anything started after it
# inherits it (our side then runs 2-3x slower).
#
#   bash bench/compute.sh                    # needs /tmp/rdask-bench/x.h5 (bench/run.sh makes it)
#   ROUNDS=5 ARRAY_FILE=/data/x.h5 PY=/path/to/venv/bin/python bash bench/compute.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ARRAY_FILE="${ARRAY_FILE:-/tmp/rdask-bench/x.h5}"
ROUNDS="${ROUNDS:-3}"
BIN="${BIN:-target/release/rdask-jobqueue}"
PY="${PY:-bench/.venv/bin/python}"
OUT_DIR="$(dirname "$ARRAY_FILE")"
CLEAN=(env -i "PATH=/usr/local/bin:/usr/bin:/bin" "HOME=$HOME")
declare -A EXPR=(
    [abs_max]='abs(x - 0.5).max()'
    [exp_mean]='exp(x).mean()'
    [sq_sum]='(x * x).sum()'
    [store_random]='random((16384, 16384), chunks=(1024, 1024))'
)
CASES=(abs_max exp_mean sq_sum store_random)
# Dask on a distributed cluster cannot store to HDF5 (a writable h5py file does not
# serialise: "Can only serialize read-only h5py files"), so store_random is ours only.
DASK_CASES=(abs_max exp_mean sq_sum)
ours() {
    local case=$1 args=(--input "x=$ARRAY_FILE:/x")
    [ "$case" = store_random ] && args=(--output "$OUT_DIR/rdask-random.h5:/r" --overwrite)
    local t0 t1
    t0=$(date +%s.%N)
    "${CLEAN[@]}" "$BIN" array "${EXPR[$case]}" "${args[@]}" --local 2 --threads 1 --quiet >/dev/null
    t1=$(date +%s.%N)
    echo "$t1 - $t0" | bc
}
results=$(mktemp)
trap 'rm -f "$results" "$OUT_DIR/rdask-random.h5"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
    for case in "${CASES[@]}"; do
        echo "ours $case $(ours "$case")" >> "$results"
    done
    "${CLEAN[@]}" "$PY" bench/dask_compute.py --file "$ARRAY_FILE" \
        --out "$OUT_DIR/dask-random.h5" "${DASK_CASES[@]}" |
        "$PY" -c 'import json,sys; [print("dask", k, v) for k, v in json.load(sys.stdin).items()]' >> "$results"
    echo "round $round done: $(tail -n $(( ${#CASES[@]} + ${#DASK_CASES[@]} )) "$results" | tr '\n' ';')"
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
"$PY" - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    side, case, t = line.split()
    runs.setdefault((side, case), []).append(float(t))
print(f"{'workload (2 GiB f64, 1024^2 chunks)':<48} {'ours s':>8} {'dask s':>8} {'ours vs dask':>13}")
for case, name in [("abs_max", "abs(x - 0.5).max()"), ("exp_mean", "exp(x).mean()"),
                   ("sq_sum", "(x * x).sum()"),
                   ("store_random", "store random((16384,16384), chunks=(1024,1024))")]:
    o = statistics.median(runs[("ours", case)])
    if ("dask", case) not in runs:
        print(f"{name:<48} {o:>8.3f} {'-':>8} {'-':>13}   ours {runs[('ours', case)]}")
        continue
    d = statistics.median(runs[("dask", case)])
    print(f"{name:<48} {o:>8.3f} {d:>8.3f} {d / o:>12.2f}x   ours {runs[('ours', case)]} dask {[round(t, 3) for t in runs[('dask', case)]]}")
PY
