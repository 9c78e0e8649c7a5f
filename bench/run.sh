#!/usr/bin/env bash
# `just bench`: rdask's runtime and array benchmarks and Dask's, in one run, on this machine.
# Results go to bench/results/ (JSON) and a side-by-side table to stdout.
#
#   bash bench/run.sh                 # Dask with 100,000 tasks: tens of minutes
#   DASK_N=20000 bash bench/run.sh    # quicker; Dask's rate barely depends on N
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/results
bash bench/setup.sh >/dev/null
cargo build --release --quiet
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%FT%TZ)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/rdask-jobqueue bench runtime --tasks "${RDASK_N:-100000}" --json > bench/results/rdask-runtime.json
bench/.venv/bin/python bench/dask_runtime.py --n "${DASK_N:-100000}" --json > bench/results/dask-runtime.json
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
bench/.venv/bin/python - <<'PY'
import json
r = json.load(open("bench/results/rdask-runtime.json"))
d = json.load(open("bench/results/dask-runtime.json"))
def row(name, ours, theirs, unit, better="higher"):
    ratio = ours / theirs if better == "higher" else theirs / ours
    print(f"{name:<40} {ours:>14,.1f} {theirs:>14,.1f}  {unit:<10} {ratio:>8.1f}x")
print(f"{'':<40} {'rdask':>14} {'dask ' + d.get('dask_version', ''):>14}  {'unit':<10} {'rdask vs dask':>8}")
row("no-op tasks, end to end", r["noop"]["tasks_per_s"], d["noop"]["tasks_per_s"], "tasks/s")
row("tree reduction, end to end", r["tree"]["tasks_per_s"], d["tree"]["tasks_per_s"], "tasks/s")
rss = sum(d["worker_rss_mb"]) / len(d["worker_rss_mb"])
row("idle worker RSS", r["worker_idle_rss_mb"], rss, "MB", better="lower")
print(f"{'scheduler alone, no-op / tree':<40} {r['scheduler_only_noop']['us_per_task']:>8.2f} / {r['scheduler_only_tree']['us_per_task']:.2f} us per task")
print(f"{'worker to worker, ' + str(r['transfer_mib']) + ' MiB (warm)':<40} {r['peer_to_peer_gb_s']:>8.2f} GB/s vs plain TCP {r['plain_tcp_gb_s']:.2f} GB/s ({100 * r['peer_to_peer_vs_tcp']:.0f}%)")
print(f"{'the very first move (cold memory)':<40} {r['first_transfer_gb_s']:>8.2f} GB/s")
print(f"{'worker start to registered':<40} {r['worker_start_to_registered_ms']:>8.1f} ms (dask: two workers up in {d['startup_s']:.2f} s)")
PY

# Arrays: the same 2 GiB float64 HDF5 dataset (made by our `bench array` when missing),
# rdask and dask.array + h5py, each on 2 worker processes with 1 thread, and the floor.
ARRAY_FILE="${ARRAY_FILE:-/tmp/rdask-bench/x.h5}"
echo
echo "arrays: $ARRAY_FILE, load before: $(cut -d' ' -f1-3 /proc/loadavg)"
target/release/rdask-jobqueue bench array --file "$ARRAY_FILE" --json > bench/results/rdask-array.json
bench/.venv/bin/python bench/dask_array.py --file "$ARRAY_FILE" --json > bench/results/dask-array.json
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
bench/.venv/bin/python - <<'PY'
import json
r = json.load(open("bench/results/rdask-array.json"))
d = json.load(open("bench/results/dask-array.json"))
floor = r["floor_read_sum_s"]
print(f"{'2 GiB float64, chunks 1024x1024':<44} {'rdask s':>9} {'dask s':>9} {'vs dask':>8} {'vs floor':>9}")
for key, name in [("mean0", "x.mean(axis=0)"), ("sum", "x.sum()"),
                  ("centred", "((x + x.T) - x.mean(axis=0)).sum(axis=1)"),
                  ("dot", f"y.dot(y.T), y = x[:{r['dot']}, :{r['dot']}]")]:
    ours, theirs = r[key + "_s"], d[key]
    vs_floor = f"{ours / floor:8.2f}x" if key in ("mean0", "sum") else ""
    print(f"{name:<44} {ours:>9.3f} {theirs:>9.3f} {theirs / ours:>7.1f}x {vs_floor:>9}")
print(f"{'floor: one process reads and sums each chunk':<44} {floor:>9.3f}")
print(f"{'dot rate (rdask)':<44} {r['dot_gflop_s']:>9.1f} GFLOP/s; dask {2 * r['dot'] ** 3 / d['dot'] / 1e9:.1f} GFLOP/s")
print(f"{'peak RSS per worker, MB':<44} rdask {[round(x) for x in r['worker_peak_rss_mb']]}, dask {[round(x) for x in d['worker_peak_rss_mb']]}")
PY

# Strided and compressed reads (gzip, shuffle+gzip, LZF copies of the same file), rounds
# alternating with dask.array, each side from a clean environment.
echo
ROUNDS="${FILTER_ROUNDS:-3}" bash bench/filters.sh

# Deployment on the local SLURM (tests/env starts it): floor, rdask, dask-jobqueue.
echo
bash bench/deploy.sh

# Issue 17's compute workloads (abs/exp/square/random), alternating rounds, clean environments.
echo
bash bench/compute.sh
# Task arrays: ours, HyperQueue and xargs (docs/benchmarks.md).
echo
bash bench/tasks.sh
