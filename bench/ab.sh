#!/usr/bin/env bash
# Two builds of rdask-jobqueue side by side, alternating, several rounds: the way to show a
# change made nothing slower on this shared, noisy machine (a single run of each proves
# nothing). Prints each round and the medians with the new/old ratio.
#
#   bash bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]       # default 3 rounds
# Each binary must be named rdask-jobqueue (workers are started as that program, found beside
# it), so keep the two builds in two directories.
#
# Build the old one from a worktree of the old commit, e.g.
#   git worktree add /tmp/old <commit> && (cd /tmp/old && cargo build --release)
# Each round runs `bench runtime` (20,000 tasks) and `bench array` (the 2 GiB file, made
# once by the first run) with each binary, in alternating order.
set -euo pipefail
old=${1:?usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]}
new=${2:?usage: bench/ab.sh OLD_BINARY NEW_BINARY [ROUNDS]}
rounds=${3:-3}
for b in "$old" "$new"; do
    [[ -x "$b" ]] || { echo "ab.sh: $b is not an executable" >&2; exit 2; }
done
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
file=${ARRAY_FILE:-/tmp/rdask-bench/x.h5}
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; $(date -u +%FT%TZ); load $(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq 1 "$rounds"); do
    # Alternate who goes first, so neither side always gets the quieter slot.
    if (( r % 2 )); then order="old new"; else order="new old"; fi
    for side in $order; do
        bin=$old; [[ $side == new ]] && bin=$new
        "$bin" bench runtime --tasks 20000 --json > "$out/$side-runtime-$r.json"
        "$bin" bench array --file "$file" --repeat 3 --json > "$out/$side-array-$r.json"
        echo "round $r: $side done (load $(cut -d' ' -f1 /proc/loadavg))"
    done
done
python3 - "$out" "$rounds" <<'PY'
import json, statistics, sys
out, rounds = sys.argv[1], int(sys.argv[2])
def load(side, kind):
    return [json.load(open(f"{out}/{side}-{kind}-{r}.json")) for r in range(1, rounds + 1)]
rows = [
    ("no-op tasks/s", "runtime", lambda j: j["noop"]["tasks_per_s"], "higher"),
    ("tree tasks/s", "runtime", lambda j: j["tree"]["tasks_per_s"], "higher"),
    ("scheduler alone, no-op us/task", "runtime", lambda j: j["scheduler_only_noop"]["us_per_task"], "lower"),
    ("scheduler alone, tree us/task", "runtime", lambda j: j["scheduler_only_tree"]["us_per_task"], "lower"),
    ("worker to worker GB/s", "runtime", lambda j: j["peer_to_peer_gb_s"], "higher"),
    ("idle worker RSS MB", "runtime", lambda j: j["worker_idle_rss_mb"], "lower"),
    ("x.mean(axis=0) s", "array", lambda j: j["mean0_s"], "lower"),
    ("x.sum() s", "array", lambda j: j["sum_s"], "lower"),
    ("((x + x.T) - x.mean(axis=0)).sum(axis=1) s", "array", lambda j: j["centred_s"], "lower"),
    ("dot s", "array", lambda j: j["dot_s"], "lower"),
]
print(f"{'median of ' + str(rounds) + ' rounds':<44} {'old':>12} {'new':>12} {'new/old':>8}  better")
for name, kind, get, better in rows:
    o = statistics.median(get(j) for j in load("old", kind))
    n = statistics.median(get(j) for j in load("new", kind))
    print(f"{name:<44} {o:>12.3f} {n:>12.3f} {n / o:>8.2f}  {better}")
PY
