#!/usr/bin/env bash
# Deployment speed on the local SLURM, three ways in one run (docs/benchmarks.md):
#   floor          raw `sbatch` of N trivial jobs, until every one has started (a marker file)
#   rdask          `scale N --wait` on a cluster that is up, until N workers are connected;
#                  then `scale 0` until no job of ours is alive; then `down`
#   dask-jobqueue  SLURMCluster.scale(N) + wait_for_workers(N); scale(0); close()
# The floor and rdask alternate, run by run (REPEAT, default 9), so that both see the same
# moods of SLURM's scheduling cycle; then dask-jobqueue, 3 runs. Medians are reported; JSON
# goes to bench/results/deploy.json.
#
#   bash bench/deploy.sh            # N=10; needs the test environment's SLURM (tests/env/up.sh)
#   RDASK_BIN=/path/to/rdask-jobqueue REPEAT=5 bash bench/deploy.sh
#
# Job arrays (MODE=arrays runs only this part; MODE=all, the default, runs both), three ways
# in one run, rotating which goes first each round (ARRAY_REPEAT rounds, default 5):
#   floor          one `sbatch --array=0-(M-1)` of M trivial jobs, until every one has started
#   array          `scale M --wait` (a scale-up is one array submission), until M connected
#   per-job        the same with `--job-arrays false` (one sbatch per job, 16 at once)
# M = ARRAY_N, default 64; both clusters allow M pending jobs. Medians to
# bench/results/deploy-arrays.json.
#   MODE=arrays bash bench/deploy.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-10}
REPEAT=${REPEAT:-9}
mkdir -p bench/results
bash tests/env/up.sh >/dev/null
bash bench/setup.sh >/dev/null
# RDASK_BIN: a binary built elsewhere (e.g. for bench/ab.sh's old/new comparisons).
if [[ -n ${RDASK_BIN:-} ]]; then
    bin=$RDASK_BIN
else
    cargo build --release --quiet
    bin=$PWD/target/release/rdask-jobqueue
fi
work=$(mktemp -d /tmp/rdask-deploy-XXXXXX)
trap 'RDASK_HOME=$work/home "$bin" down --force --name bench >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

MODE=${MODE:-all}
ARRAY_N=${ARRAY_N:-64}
ARRAY_REPEAT=${ARRAY_REPEAT:-5}

now() { date +%s.%N; }
since() { echo "$(now) - $1" | bc -l; }
# Jobs alive (pending, running, completing) whose name starts with $1.
alive() { squeue --noheader --format=%j | grep -c "^$1" || true; }
# Before each measured run: no job alive and the node idle again (a node still cleaning up
# after cancelled jobs starts new ones later), then 1 to 2 s at random. Why random: slurmctld
# starts the jobs submitted since its last pass at its next once-a-second background pass
# (its log shows every "sched: Allocate" at the same fraction of a second), so a run waits
# 0-1 s depending on where in that second it submits; a fixed pause would hand one side the
# lucky phase every time.
settle() {
    while (( $(squeue --noheader | wc -l) > 0 )) || [[ $(sinfo --noheader --format=%T | sort -u) != idle ]]; do
        sleep 0.1
    done
    sleep "1.$(printf '%03d' $((RANDOM % 1000)))"
}
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r), SLURM $(sinfo --version | awk '{print $2}'); $(date -u +%FT%TZ)"
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- job arrays: floor, scale M by one array, scale M job by job --------------------------
# One measured run of `scale M --wait` on a cluster that is up (its start is not compared),
# then scale 0 and down, unmeasured. $1: the cluster's name, $2: --job-arrays true/false.
scale_run() {
    "$bin" up --name "$1" --system slurm --queue debug --cores 1 --memory 500MiB \
        --walltime 00:10:00 --max-pending-jobs "$ARRAY_N" --job-arrays "$2" >/dev/null
    settle
    local t0
    t0=$(now)
    "$bin" scale "$ARRAY_N" --name "$1" --wait --wait-timeout 300 >/dev/null 2>&1
    since "$t0"
    "$bin" scale 0 --name "$1" >/dev/null
    while (( $(alive "rdask-$1-") > 0 )); do sleep 0.05; done
    "$bin" down --name "$1" >/dev/null
}
floor_array_run() {
    local marks=$work/array-floor-$1 t0
    mkdir -p "$marks"
    settle
    t0=$(now)
    sbatch --parsable --quiet -J rdask-afloor -p debug -c 1 --mem=500M -t 00:10:00 \
        --array=0-$((ARRAY_N - 1)) -o /dev/null \
        --wrap "touch $marks/\$SLURM_ARRAY_TASK_ID; sleep 60" >/dev/null
    while (( $(ls "$marks" | wc -l) < ARRAY_N )); do sleep 0.005; done
    since "$t0"
    scancel --name rdask-afloor
    while (( $(alive rdask-afloor) > 0 )); do sleep 0.05; done
}
if [[ $MODE == all || $MODE == arrays ]]; then
    afloor=() ; aarray=() ; aperjob=()
    export RDASK_HOME=$work/home
    trap 'for c in bench arr perjob; do RDASK_HOME=$work/home "$bin" down --force --name $c >/dev/null 2>&1 || true; done; scancel --name rdask-afloor 2>/dev/null || true; rm -rf "$work"' EXIT
    for r in $(seq "$ARRAY_REPEAT"); do
        order=(floor array perjob)
        shift_by=$(( (r - 1) % 3 ))
        order=("${order[@]:shift_by}" "${order[@]:0:shift_by}")
        for what in "${order[@]}"; do
            case $what in
                floor) afloor+=("$(floor_array_run "$r")") ;;
                array) aarray+=("$(scale_run arr true)") ;;
                perjob) aperjob+=("$(scale_run perjob false)") ;;
            esac
        done
        echo "round $r: floor ${afloor[-1]} array ${aarray[-1]} per-job ${aperjob[-1]}" >&2
    done
    unset RDASK_HOME
    python3 - "$ARRAY_N" "${afloor[*]}" "${aarray[*]}" "${aperjob[*]}" <<'PY' | tee bench/results/deploy-arrays.txt
import json, statistics, sys
m = int(sys.argv[1])
runs = {k: list(map(float, v.split())) for k, v in zip(["floor", "array", "per_job"], sys.argv[2:5])}
med = {k: statistics.median(v) for k, v in runs.items()}
print(f"M = {m} workers (1 core, 500 MiB each, one per job), median of {len(runs['floor'])} rounds   seconds")
print(f"{'floor: one sbatch --array until all started':<52} {med['floor']:>7.2f}")
print(f"{'rdask: scale M --wait, one array':<52} {med['array']:>7.2f}   {med['array'] / med['floor']:.2f}x the floor")
print(f"{'rdask: scale M --wait, job_arrays = false':<52} {med['per_job']:>7.2f}   array is {med['per_job'] / med['array']:.2f}x faster")
json.dump({"m": m, "median_s": med, "runs": runs}, open("bench/results/deploy-arrays.json", "w"), indent=2)
PY
    [[ $MODE == arrays ]] && exit 0
fi

floor=() ; scale=() ; scale0=() ; down=()
export RDASK_HOME=$work/home
for r in $(seq "$REPEAT"); do
    # The floor: N jobs that only say they started.
    marks=$work/floor-$r
    mkdir -p "$marks"
    settle
    t0=$(now)
    for i in $(seq "$N"); do
        sbatch --parsable --quiet -J rdask-floor -p debug -c 1 --mem=500M -t 00:10:00 \
            -o /dev/null --wrap "touch $marks/\$SLURM_JOB_ID; sleep 30" >/dev/null
    done
    while (( $(ls "$marks" | wc -l) < N )); do sleep 0.005; done
    floor+=("$(since "$t0")")
    scancel --name rdask-floor
    while (( $(alive rdask-floor) > 0 )); do sleep 0.05; done

    # rdask: the cluster is up (its start is not what is compared), then scale N / 0, down.
    "$bin" up --name bench --system slurm --queue debug --cores 1 --memory 500MiB \
        --walltime 00:10:00 >/dev/null
    settle
    t0=$(now)
    "$bin" scale "$N" --name bench --wait >/dev/null 2>&1
    scale+=("$(since "$t0")")
    t0=$(now)
    "$bin" scale 0 --name bench >/dev/null
    while (( $(alive rdask-bench-) > 0 )); do sleep 0.02; done
    scale0+=("$(since "$t0")")
    t0=$(now)
    "$bin" down --name bench >/dev/null
    down+=("$(since "$t0")")
done
unset RDASK_HOME

# dask-jobqueue, same job shape.
bench/.venv/bin/python bench/dask_deploy.py --n "$N" --repeat 3 --json > "$work/dask.json"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"

python3 - "$work/dask.json" "$N" "$(median "${floor[@]}")" "$(median "${scale[@]}")" \
    "$(median "${scale0[@]}")" "$(median "${down[@]}")" "${floor[*]}" "${scale[*]}" \
    "${scale0[*]}" "${down[*]}" <<'PY' | tee bench/results/deploy.txt
import json, sys
d = json.load(open(sys.argv[1]))
n = int(sys.argv[2])
floor, scale, scale0, down = map(float, sys.argv[3:7])
runs = {k: list(map(float, v.split())) for k, v in zip(["floor", "scale", "scale0", "down"], sys.argv[7:11])}
dm = d["median"]
print(f"{'N = %d workers (1 core, 500 MB each), median of %d' % (n, len(runs['floor'])):<44} {'seconds':>9}   (dask-jobqueue: median of {len(d['runs'])})")
print(f"{'floor: raw sbatch until all started':<44} {floor:>9.2f}")
print(f"{'rdask: scale N --wait until N connected':<44} {scale:>9.2f}   {scale / floor:.2f}x the floor")
print(f"{'dask-jobqueue: scale(N) + wait_for_workers':<44} {dm['scale_s']:>9.2f}   rdask is {dm['scale_s'] / scale:.1f}x faster")
print(f"{'rdask: scale 0 until no job is left':<44} {scale0:>9.2f}")
print(f"{'dask-jobqueue: scale(0) until no job is left':<44} {dm['scale0_s']:>9.2f}")
print(f"{'rdask: down':<44} {down:>9.2f}")
print(f"{'dask-jobqueue: close()':<44} {dm['close_s']:>9.2f}")
json.dump({"n": n, "floor_s": floor, "scale_s": scale, "scale0_s": scale0, "down_s": down,
           "runs": runs, "dask_jobqueue": d}, open("bench/results/deploy.json", "w"), indent=2)
PY

# Native SLURM (libslurm) against the commands: one poll of 1,000 jobs, scale 64 --wait.
if [[ ${NATIVE:-1} == 1 ]]; then
    bash bench/deploy_native.sh
fi
