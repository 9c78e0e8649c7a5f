#!/usr/bin/env bash
# SLURM through libslurm (feature slurm-native) against SLURM through its commands, in one
# run, alternating round by round (docs/benchmarks.md):
#   poll     one state poll of JOBS held jobs (`jobs status ID...`, a fresh process each:
#            slurm_init + one slurm_load_jobs, against one `squeue --jobs=...`), same answer
#   scale    `scale N --wait` on a cluster that is up, until N workers are connected, then
#            `scale 0` until no job of ours is alive
# Medians of ROUNDS; JSON to bench/results/deploy_native.json. Run by bench/deploy.sh, or:
#
#   bash bench/deploy_native.sh                         # JOBS=1000 N=64 ROUNDS=5
#   RDASK_BIN=target/debug/rdask-jobqueue ROUNDS=3 bash bench/deploy_native.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-1000}
N=${N:-64}
ROUNDS=${ROUNDS:-5}
mkdir -p bench/results
# Only when SLURM is down: up.sh rewrites slurm.conf to this checkout's (and restarts it).
sinfo >/dev/null 2>&1 || bash tests/env/up.sh >/dev/null
if [[ -n ${RDASK_BIN:-} ]]; then
    bin=$RDASK_BIN
else
    cargo build --release --quiet --features slurm-native
    bin=$PWD/target/release/rdask-jobqueue
fi
work=$(mktemp -d /tmp/rdask-native-XXXXXX)
cleanup() {
    for p in native commands; do
        RDASK_HOME=$work/home "$bin" down --force --name "nb-$p" >/dev/null 2>&1 || true
    done
    scancel --name rdask-native-held >/dev/null 2>&1 || true
    rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
alive() { squeue --noheader --format=%j | grep -c "^$1" || true; }
# Before each measured run: none of our jobs alive, then 1 to 2 s at random (see deploy.sh's
# settle: slurmctld's once-a-second pass must not favour one side).
settle() {
    while (( $(alive rdask-nb-) > 0 )); do sleep 0.1; done
    sleep "1.$(printf '%03d' $((RANDOM % 1000)))"
}

# 64 one-core workers need a node announcing 64 CPUs (tests/env/slurm.sh); fewer: N shrinks.
cpus=$(sinfo -h -o %c | sort -g | tail -1)
if (( cpus < N )); then
    echo "the node has $cpus CPUs: scale $cpus instead of $N"
    N=$cpus
fi
echo "machine: $(nproc) cores, SLURM $(sinfo --version | awk '{print $2}'), node $(sinfo -h -o '%c CPUs %m MB'); $(date -u +%FT%TZ)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# --- one poll of JOBS held jobs -------------------------------------------------------------
echo "submitting $JOBS held jobs ..."
seq "$JOBS" | xargs -P 8 -I{} sbatch --parsable --hold -J rdask-native-held -p debug \
    -c 1 --mem=10M -t 1 -o /dev/null --wrap true > "$work/held"
mapfile -t ids < "$work/held"
(( ${#ids[@]} == JOBS )) || { echo "only ${#ids[@]} of $JOBS held jobs submitted" >&2; exit 1; }
poll_native=() ; poll_commands=()
for r in $(seq "$ROUNDS"); do
    for p in native commands; do
        flag=$([[ $p == native ]] && echo true || echo false)
        t0=$(now)
        RDASK_SLURM_NATIVE=$flag "$bin" jobs status --system slurm "${ids[@]}" > "$work/poll-$p" 2>/dev/null
        t=$(since "$t0")
        if [[ $p == native ]]; then poll_native+=("$t"); else poll_commands+=("$t"); fi
    done
    cmp -s "$work/poll-native" "$work/poll-commands" || { echo "the two polls disagree" >&2; diff "$work/poll-native" "$work/poll-commands" | head >&2; exit 1; }
    (( $(grep -c ' pending$' "$work/poll-native") == JOBS )) || { echo "not every held job is pending" >&2; exit 1; }
done
scancel --name rdask-native-held
while (( $(alive rdask-native-held) > 0 )); do sleep 0.2; done

# --- scale N --wait -------------------------------------------------------------------------
export RDASK_HOME=$work/home
for p in native commands; do
    RDASK_SLURM_NATIVE=$([[ $p == native ]] && echo true || echo false) \
        "$bin" up --name "nb-$p" --system slurm --queue debug --cores 1 --memory 500MiB \
        --walltime 00:10:00 >/dev/null
    "$bin" status --name "nb-$p" | head -1
done
"$bin" status --name nb-native | grep -q 'via libslurm' || {
    echo "$bin has no native SLURM (build it with --features slurm-native)" >&2
    exit 1
}
scale_native=() ; scale_commands=() ; zero_native=() ; zero_commands=()
for r in $(seq "$ROUNDS"); do
    for p in native commands; do
        settle
        t0=$(now)
        "$bin" scale "$N" --name "nb-$p" --wait --wait-timeout 600 >/dev/null
        t=$(since "$t0")
        t0=$(now)
        "$bin" scale 0 --name "nb-$p" >/dev/null
        while (( $(alive "rdask-nb-$p-") > 0 )); do sleep 0.05; done
        z=$(since "$t0")
        if [[ $p == native ]]; then scale_native+=("$t"); zero_native+=("$z"); else scale_commands+=("$t"); zero_commands+=("$z"); fi
        echo "round $r $p: scale $N ${t}s, scale 0 ${z}s"
    done
done
for p in native commands; do "$bin" down --name "nb-$p" >/dev/null; done
unset RDASK_HOME
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$JOBS" "$N" "${poll_native[*]}" "${poll_commands[*]}" "${scale_native[*]}" \
    "${scale_commands[*]}" "${zero_native[*]}" "${zero_commands[*]}" <<'PY' | tee bench/results/deploy_native.txt
import json, statistics, sys
jobs, n = int(sys.argv[1]), int(sys.argv[2])
names = ["poll_native", "poll_commands", "scale_native", "scale_commands", "zero_native", "zero_commands"]
runs = {k: list(map(float, v.split())) for k, v in zip(names, sys.argv[3:9])}
med = {k: statistics.median(v) for k, v in runs.items()}
print(f"median of {len(runs['poll_native'])} rounds, alternating          libslurm  commands  ratio")
for what, a, b in [(f"one poll of {jobs} held jobs (s)", "poll_native", "poll_commands"),
                   (f"scale {n} --wait (s)", "scale_native", "scale_commands"),
                   ("scale 0 until no job is left (s)", "zero_native", "zero_commands")]:
    print(f"{what:<44} {med[a]:>8.3f}  {med[b]:>8.3f}  {med[b] / med[a]:.2f}x")
json.dump({"jobs": jobs, "n": n, "median": med, "runs": runs},
          open("bench/results/deploy_native.json", "w"), indent=2)
PY
