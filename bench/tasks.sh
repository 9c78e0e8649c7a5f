#!/usr/bin/env bash
# Task arrays (docs/tasks.md) side by side with HyperQueue and the xargs floor, in one run,
# alternating, ROUNDS rounds (default 3), medians. Results: bench/results/tasks.json.
#
#   bash bench/tasks.sh                  # 10,000 `true` x3 each side, makespan, 100,000 queued
#   ROUNDS=5 N=20000 bash bench/tasks.sh
#   RDASK_BIN=/tmp/rdask-jobqueue bash bench/tasks.sh   # a given binary, no build
#
# 1. N tasks of `true`: ours (`submit --local 2`: two one-thread workers; time from submit to
#    every task done, as the command reports it), HyperQueue 0.27's Python LocalCluster with one
#    2-core worker and `Job.program(["true"])` per task (bench/hq_tasks.py), and
#    `seq N | xargs -P 2 -n 1 true`. Outputs dropped on both sides.
# 2. 1,000 tasks of `sleep 0.05` with --cpus 1 on 2 one-thread workers: makespan vs the
#    ideal 25 s.
# 3. 100,000 `true` as one array on a named cluster (system `local`) with no workers: how
#    long `submit` takes to return, and the daemon's (scheduler's) resident memory per queued
#    task.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS="${ROUNDS:-3}"
N="${N:-10000}"
BIG="${BIG:-100000}"
mkdir -p bench/results
bash bench/setup.sh >/dev/null
# RDASK_BIN: measure that binary (a copy of an earlier build, say) instead of building.
if [[ -z "${RDASK_BIN:-}" ]]; then cargo build --release --quiet; fi
bin="${RDASK_BIN:-$PWD/target/release/rdask-jobqueue}"
py="$PWD/bench/.venv/bin/python"
work="$(mktemp -d /tmp/rdask-bench-tasks.XXXXXX)"
trap 'RDASK_HOME=$work/home "$bin" down --force --name bench >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
export RDASK_HOME="$work/home"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); $(date -u +%FT%TZ)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

now() { date +%s.%N; }
ours=() hq=() floor=()
for r in $(seq "$ROUNDS"); do
  s=$("$bin" submit --local 2 --json --array "1-$N" --stdout none --stderr none -- true \
      | $py -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
  ours+=("$s")
  h=$(cd "$work" && $py "$OLDPWD/bench/hq_tasks.py" --n "$N" --cores 2 2>/dev/null \
      | tail -1 | $py -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
  hq+=("$h")
  t0=$(now); seq "$N" | xargs -P 2 -n 1 true; t1=$(now)
  floor+=("$(echo "$t1 - $t0" | bc -l)")
  echo "round $r: ours ${s}s, hyperqueue ${h}s, xargs ${floor[-1]}s"
done

# Makespan: 1,000 x sleep 0.05 on 2 one-thread workers (ideal 25 s).
mk=()
for r in $(seq "$ROUNDS"); do
  s=$("$bin" submit --local 2 --json --array 1-1000 --cpus 1 --stdout none --stderr none \
      -- sleep 0.05 | $py -c 'import json,sys; print(json.load(sys.stdin)["seconds"])')
  mk+=("$s")
  echo "makespan round $r: ${s}s"
done

# 100,000 queued: submit's return time and the daemon's memory per queued task.
"$bin" up --system local --name bench --scale 0 --cores 1 --memory 1GiB --walltime 01:00:00 >/dev/null
pid=$("$bin" status --name bench --json | $py -c 'import json,sys; print(json.load(sys.stdin)["pid"])')
rss() { awk '/VmRSS/{print $2}' "/proc/$pid/status"; }
sleep 1
before=$(rss)
t0=$(now)
id=$("$bin" submit --cluster bench --array "1-$BIG" --stdout none --stderr none -- true 2>/dev/null)
t1=$(now)
sleep 2
after=$(rss)
submit_s=$(echo "$t1 - $t0" | bc -l)
"$bin" cancel --cluster bench "$id" >/dev/null
"$bin" down --name bench >/dev/null
echo "submit of $BIG tasks returned in ${submit_s}s; daemon RSS ${before} -> ${after} KiB"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

$py - "$N" "$BIG" "$submit_s" "$before" "$after" \
  "${ours[*]}" "${hq[*]}" "${floor[*]}" "${mk[*]}" <<'PY' | tee bench/results/tasks.json
import json, statistics, sys
n, big, submit_s, before, after = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
ours, hq, floor, mk = ([float(x) for x in a.split()] for a in sys.argv[6:10])
m = statistics.median
out = {
    "tasks": n,
    "ours_s": ours, "hyperqueue_s": hq, "xargs_s": floor,
    "ours_tasks_per_s": n / m(ours), "hyperqueue_tasks_per_s": n / m(hq), "xargs_tasks_per_s": n / m(floor),
    "ours_vs_hyperqueue": m(hq) / m(ours), "ours_vs_xargs": m(floor) / m(ours),
    "makespan_s": mk, "makespan_median_s": m(mk), "makespan_vs_ideal": m(mk) / 25.0,
    "big_tasks": big, "big_submit_s": submit_s,
    "big_bytes_per_queued_task": (after - before) * 1024 / big,
}
print(json.dumps(out, indent=1))
print(f"# {n} x true: ours {out['ours_tasks_per_s']:.0f}/s, hyperqueue {out['hyperqueue_tasks_per_s']:.0f}/s "
      f"({out['ours_vs_hyperqueue']:.2f}x), xargs -P 2 {out['xargs_tasks_per_s']:.0f}/s "
      f"({100 * out['ours_vs_xargs']:.0f}% of the floor)", file=sys.stderr)
print(f"# 1000 x sleep 0.05 on 2 workers: {out['makespan_median_s']:.2f} s "
      f"({100 * (out['makespan_vs_ideal'] - 1):+.1f}% vs 25 s)", file=sys.stderr)
print(f"# {big} queued: submit returned in {submit_s:.3f} s; "
      f"{out['big_bytes_per_queued_task']:.1f} bytes per queued task", file=sys.stderr)
PY
