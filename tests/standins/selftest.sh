#!/usr/bin/env bash
# Self-test of the batch-system stand-ins (tests/standins/*). For each system:
#   - a job that writes a marker file and sleeps: pending (with
#     RDASK_STANDIN_PENDING_SECONDS=2) -> running -> cancelled, as the tool shows it
#   - a job that exits 3: failed, where the tool can say so
#   - a submission to an unknown queue: rejected, no job id used, nothing started
#   - unknown job ids in the status and cancel commands
# Every wait has a deadline; every job process started is killed at the end.
# Usage: tests/standins/selftest.sh [pbs moab lsf oar htcondor]
set -u
HERE=$(cd "$(dirname "$(readlink -f "$0")")" && pwd)
WORK=$(mktemp -d "${TMPDIR:-/tmp}/standin-selftest.XXXXXX")
FAILS=0
CHECKS=0
CURRENT=""

cleanup() {
    local pg
    for pg in "$WORK"/state-*/jobs/*/pgid; do
        [[ -f $pg ]] || continue
        pg=$(<"$pg")
        [[ $pg =~ ^[0-9]+$ ]] || continue
        kill -KILL -- "-$pg" 2>/dev/null
        pkill -KILL -s "$pg" 2>/dev/null
    done
    rm -rf "$WORK"
}
trap cleanup EXIT

ok() {
    CHECKS=$((CHECKS + 1))
    printf '  ok   %s\n' "$1"
}
fail() {
    CHECKS=$((CHECKS + 1))
    FAILS=$((FAILS + 1))
    printf '  FAIL [%s] %s\n' "$CURRENT" "$1"
    [[ -n ${2:-} ]] && printf '       %s\n' "${2//$'\n'/$'\n'       }"
}
check() { # description command...
    local d=$1
    shift
    if "$@"; then ok "$d"; else fail "$d"; fi
}
eq() { # description expected actual
    if [[ $2 == "$3" ]]; then ok "$1"; else fail "$1" "expected: [$2]"$'\n'"actual:   [$3]"; fi
}
contains() { # description needle haystack
    if [[ $3 == *"$2"* ]]; then ok "$1"; else fail "$1" "missing: [$2]"$'\n'"in:      [$3]"; fi
}
# wait_for SECONDS DESCRIPTION COMMAND... : poll every 0.2 s until true
wait_for() {
    local deadline=$((SECONDS + $1)) d=$2
    shift 2
    while ! "$@"; do
        if ((SECONDS >= deadline)); then
            fail "timed out waiting for: $d"
            return 1
        fi
        sleep 0.2
    done
    ok "reached: $d"
}
# run CMD...: captures OUT, ERR, RC
run() {
    OUT=$("$@" 2>"$WORK/stderr")
    RC=$?
    ERR=$(<"$WORK/stderr")
}
json_get() { # python expression on d (the parsed JSON on stdin)
    python3 -c "import json,sys
d=json.load(sys.stdin)
print($1)"
}
state_snapshot() { # counter and number of job dirs
    local c=1000
    [[ -s $RDASK_STANDIN_STATE/counter ]] && c=$(<"$RDASK_STANDIN_STATE/counter")
    printf '%s/%s' "$c" "$(find "$RDASK_STANDIN_STATE/jobs" -mindepth 1 -maxdepth 1 -type d 2>/dev/null | wc -l)"
}
use_system() { # system: PATH and a fresh state dir
    CURRENT=$1
    export RDASK_STANDIN_STATE=$WORK/state-$1
    export RDASK_STANDIN_KILL_DELAY=2
    unset RDASK_STANDIN_QUEUES RDASK_STANDIN_PENDING_SECONDS
    PATH="$HERE/$1:$BASE_PATH"
    MARK=$WORK/marks-$1
    mkdir -p "$MARK" "$WORK/logs-$1"
    cd "$WORK" || exit 1
    printf '\n== %s\n' "$1"
}
BASE_PATH=$PATH

# --------------------------------------------------------------------------
test_pbs() {
    use_system pbs
    cat >"$WORK/pbs-job.sh" <<EOF
#!/bin/bash
#PBS -N marker
#PBS -q workq
#PBS -l select=1:ncpus=1:mem=1GB
#PBS -l walltime=00:05:00
#PBS -o $WORK/logs-pbs/
#PBS -e $WORK/logs-pbs/
echo "\$PBS_JOBID \$PBS_JOBNAME \$PBS_O_WORKDIR" > "$MARK/\${PBS_JOBID%%.*}"
echo to-stdout
sleep 60
EOF
    pbs_state() { qstat -x -f -F json "$1" 2>/dev/null | json_get "d['Jobs']['$1']['job_state']" 2>/dev/null; }
    export RDASK_STANDIN_PENDING_SECONDS=2
    run qsub "$WORK/pbs-job.sh"
    eq "qsub prints <seq>.<server>" "1000.pbsserver" "$OUT"
    local jid=$OUT
    unset RDASK_STANDIN_PENDING_SECONDS
    eq "pending: job_state Q" Q "$(pbs_state "$jid")"
    check "no marker while pending" test ! -e "$MARK/1000"
    run qstat "$jid"
    contains "plain qstat table shows Q" "1000.pbsserver    marker           root" "$OUT"
    wait_for 10 "job_state R" eval '[[ $(pbs_state "$jid") == R ]]'
    wait_for 5 "marker written by the running job" test -s "$MARK/1000"
    eq "job env PBS_JOBID PBS_JOBNAME PBS_O_WORKDIR" "1000.pbsserver marker $WORK" "$(cat "$MARK/1000" 2>/dev/null)"
    wait_for 5 "stdout in <dir>/<jobid>.OU" test -s "$WORK/logs-pbs/1000.pbsserver.OU"
    run qdel "$jid"
    eq "qdel is silent and exits 0" "0:" "$RC:$OUT$ERR"
    eq "cancelled: job_state F" F "$(pbs_state "$jid")"
    eq "cancelled running job: Exit_status 271" 271 "$(qstat -x -f -F json "$jid" | json_get "d['Jobs']['$jid']['Exit_status']")"
    run qstat -f -F json "$jid"
    eq "qstat without -x on a finished job: exit 35" 35 "$RC"
    eq "  ... message" "qstat: 1000.pbsserver Job has finished, use -x or -H to obtain historical job information" "$ERR"
    eq "  ... JSON without a Jobs key" "False" "$(printf '%s' "$OUT" | json_get "'Jobs' in d")"
    run qdel "$jid"
    eq "qdel on a finished job: exit 35 + message" "35:qdel: Job has finished 1000.pbsserver" "$RC:$ERR"

    # cancel while pending
    RDASK_STANDIN_PENDING_SECONDS=30 run qsub "$WORK/pbs-job.sh"
    local pend=$OUT
    eq "second job pending" Q "$(pbs_state "$pend")"
    run qdel "$pend"
    eq "qdel of a pending job" 0 "$RC"
    eq "  ... F and no Exit_status" "F False" "$(qstat -x -f -F json "$pend" | json_get "d['Jobs']['$pend']['job_state'], 'Exit_status' in d['Jobs']['$pend']")"

    # exit 3
    printf '#!/bin/sh\nexit 3\n' >"$WORK/exit3.sh"
    run qsub "$WORK/exit3.sh"
    local j3=$OUT
    wait_for 10 "exit-3 job finished (F)" eval '[[ $(pbs_state "$j3") == F ]]'
    eq "exit-3 job: Exit_status 3" 3 "$(qstat -x -f -F json "$j3" | json_get "d['Jobs']['$j3']['Exit_status']")"

    # unknown queue
    local before
    before=$(state_snapshot)
    run qsub -q nosuch "$WORK/pbs-job.sh"
    eq "unknown queue: exit 170, 'qsub: Unknown queue'" "170:qsub: Unknown queue:" "$RC:$ERR:$OUT"
    eq "  ... no job id used, nothing created" "$before" "$(state_snapshot)"

    # unknown ids
    run qstat -x -f -F json "$jid" 99999
    eq "qstat with an unknown id: exit 153" 153 "$RC"
    eq "  ... message" "qstat: Unknown Job Id 99999.pbsserver" "$ERR"
    eq "  ... the known job is still printed" "['$jid']" "$(printf '%s' "$OUT" | json_get "list(d['Jobs'])")"
    run qdel 99999
    eq "qdel unknown id: exit 153 + message" "153:qdel: Unknown Job Id 99999.pbsserver" "$RC:$ERR"

    # a job array (-J): one id for the array, each subjob ARRAY[K].server alone
    printf '#!/bin/bash\necho "$PBS_JOBID $PBS_ARRAY_INDEX $PBS_ARRAY_ID" > "%s/arr-$PBS_ARRAY_INDEX"\nsleep 60\n' "$MARK" >"$WORK/pbs-array.sh"
    run qsub -J 1-3 "$WORK/pbs-array.sh"
    local arr=$OUT a=${OUT%%[*}
    check "qsub -J prints <seq>[].<server>" test "$arr" = "$a[].pbsserver"
    wait_for 10 "subjob 2 runs" eval '[[ $(pbs_state "$a[2].pbsserver") == R ]]'
    wait_for 5 "subjob 2 learns its ids" test -s "$MARK/arr-2"
    eq "subjob env PBS_JOBID PBS_ARRAY_INDEX PBS_ARRAY_ID" "$a[2].pbsserver 2 $a[].pbsserver" "$(cat "$MARK/arr-2" 2>/dev/null)"
    run qdel "$a[2].pbsserver"
    eq "qdel of one subjob" 0 "$RC"
    eq "  ... it ends, the others run" "F R" "$(pbs_state "$a[2].pbsserver") $(pbs_state "$a[3].pbsserver")"
    run qstat -x -f -F json "$a[9].pbsserver"
    eq "unknown subjob: exit 153 + message" "153:qstat: Unknown Job Id $a[9].pbsserver" "$RC:$ERR"
    run qsub -J 3-1 "$WORK/pbs-array.sh"
    eq "a bad -J range is refused" "2:qsub: illegal -J value" "$RC:$ERR"
    qdel "$a[1].pbsserver" "$a[3].pbsserver"
}

# --------------------------------------------------------------------------
test_moab() {
    use_system moab
    cat >"$WORK/moab-job.sh" <<EOF
#!/bin/bash
#PBS -N marker
#PBS -l nodes=1:ppn=1,walltime=00:05:00
#PBS -o $WORK/logs-moab/
#PBS -j oe
echo "\$MOAB_JOBID \$PBS_JOBID \$PBS_JOBNAME" > "$MARK/\$MOAB_JOBID"
sleep 60
EOF
    showq_state() { # id -> Running|Idle|"" (from showq --xml)
        showq --xml | python3 -c "import sys,xml.etree.ElementTree as E
r=E.fromstring(sys.stdin.read())
print(''.join(j.get('State') for q in r.iter('queue') for j in q.iter('job') if j.get('JobID')=='$1'))"
    }
    export RDASK_STANDIN_PENDING_SECONDS=2
    run msub "$WORK/moab-job.sh"
    unset RDASK_STANDIN_PENDING_SECONDS
    eq "msub prints a blank line then the id" $'\n1000' "$OUT"
    local id=1000
    eq "pending: State Idle in showq --xml" Idle "$(showq_state $id)"
    contains "  ... in the eligible section" '<queue count="1" option="eligible"><job ' "$(showq --xml)"
    wait_for 10 "State Running (active)" eval '[[ $(showq_state $id) == Running ]]'
    wait_for 5 "marker" test -s "$MARK/$id"
    eq "job env MOAB_JOBID PBS_JOBID PBS_JOBNAME" "1000 1000.torqueserver marker" "$(cat "$MARK/$id" 2>/dev/null)"
    check "-o dir/ with -j oe: <dir>/<name>.o<id>" test -e "$WORK/logs-moab/marker.o1000"
    run canceljob $id
    eq "canceljob output" $'\njob \'1000\' cancelled' "$OUT"
    eq "cancelled job is gone from showq --xml" "" "$(showq_state $id)"
    contains "showq -c --xml: Removed, CNCLD" 'CompletionCode="CNCLD"' "$(showq -c --xml)"
    run canceljob $id
    eq "canceljob again: exit 1 + message" "1:ERROR:  invalid job specified (1000)" "$RC:$ERR"

    printf '#!/bin/sh\nexit 3\n' >"$WORK/exit3.sh"
    run msub "$WORK/exit3.sh"
    local j3=${OUT//$'\n'/}
    wait_for 10 "exit-3 job left showq" eval '[[ -z $(showq_state $j3) ]] && [[ -f $RDASK_STANDIN_STATE/jobs/$j3/ended ]]'
    contains "showq -c --xml: CompletionCode 3" "CompletionCode=\"3\" CompletionTime=" "$(showq -c --xml)"
    eq "checkjob: Completed" "State: Completed " "$(checkjob "$j3" | grep '^State:')"

    local before
    before=$(state_snapshot)
    run msub -q nosuch "$WORK/moab-job.sh"
    eq "unknown queue: rejected (exit 1)" 1 "$RC"
    contains "  ... message" "ERROR:  invalid class specified: nosuch" "$ERR"
    eq "  ... nothing created" "$before" "$(state_snapshot)"

    run canceljob 99999
    eq "canceljob unknown id: exit 1 + message" "1:ERROR:  invalid job specified (99999)" "$RC:$ERR"
}

# --------------------------------------------------------------------------
test_lsf() {
    use_system lsf
    cat >"$WORK/lsf-job.sh" <<EOF
#!/bin/bash
#BSUB -J marker
#BSUB -n 1
#BSUB -o $WORK/logs-lsf/
#BSUB -W 00:05
echo "\$LSB_JOBID \$LSB_JOBNAME \$PWD" > "$MARK/\$LSB_JOBID"
sleep 60
EOF
    lsf_stat() { bjobs -noheader -o "jobid stat" "$1" 2>/dev/null | awk '{print $2}'; }
    export RDASK_STANDIN_PENDING_SECONDS=2
    run bsub <"$WORK/lsf-job.sh"
    unset RDASK_STANDIN_PENDING_SECONDS
    eq "bsub output" "Job <1000> is submitted to queue <normal>." "$OUT"
    local id=1000
    eq "pending: PEND" PEND "$(lsf_stat $id)"
    wait_for 10 "RUN" eval '[[ $(lsf_stat $id) == RUN ]]'
    wait_for 5 "marker" test -s "$MARK/$id"
    eq "job env LSB_JOBID LSB_JOBNAME, cwd = submission dir" "1000 marker $WORK" "$(cat "$MARK/$id" 2>/dev/null)"
    check "-o dir/: <dir>/<jobid>.out" test -e "$WORK/logs-lsf/1000.out"
    run bkill $id
    eq "bkill output" "0:Job <1000> is being terminated" "$RC:$OUT"
    eq "killed job: EXIT" EXIT "$(lsf_stat $id)"
    run bkill $id
    eq "bkill again: exit 255 + message" "255:Job <1000>: Job has already finished" "$RC:$ERR"

    run bsub <<<'exit 3'
    local j3=1001
    wait_for 10 "exit-3 job: EXIT" eval '[[ $(lsf_stat $j3) == EXIT ]]'
    eq "exit_code 3" "1001 EXIT 3" "$(bjobs -noheader -o 'jobid stat exit_code' $j3 | xargs)"
    run bsub <<<'exit 0'
    wait_for 10 "exit-0 job: DONE" eval '[[ $(lsf_stat 1002) == DONE ]]'

    local before
    before=$(state_snapshot)
    run bsub -q nosuch <"$WORK/lsf-job.sh"
    eq "unknown queue: exit 255 + message" "255:nosuch: No such queue. Job not submitted.:" "$RC:$ERR:$OUT"
    eq "  ... nothing created" "$before" "$(state_snapshot)"

    run bjobs -noheader -o "jobid stat" $id 99999
    eq "bjobs with an unknown id: exit 255" 255 "$RC"
    eq "  ... message" "Job <99999> is not found" "$ERR"
    eq "  ... the known job is still printed" "1000 EXIT" "$(xargs <<<"$OUT")"
    run bkill 99999
    eq "bkill unknown id: exit 255 + message" "255:Job <99999>: No matching job found" "$RC:$ERR"
}

# --------------------------------------------------------------------------
test_oar() {
    use_system oar
    cat >"$WORK/oar-job.sh" <<EOF
#!/bin/bash
#OAR -n marker
#OAR -l /nodes=1/core=1,walltime=00:05:00
#OAR -O $WORK/logs-oar/%jobid%.out
#OAR -E $WORK/logs-oar/%jobid%.err
echo "\$OAR_JOB_ID \$OAR_JOBID \$PWD" > "$MARK/\$OAR_JOB_ID"
sleep 60
EOF
    chmod +x "$WORK/oar-job.sh"
    oar_state() { oarstat -J -j "$1" 2>/dev/null | json_get "d['$1']['state']" 2>/dev/null; }
    export RDASK_STANDIN_PENDING_SECONDS=2
    run oarsub -S "$WORK/oar-job.sh"
    unset RDASK_STANDIN_PENDING_SECONDS
    contains "oarsub prints OAR_JOB_ID=" "OAR_JOB_ID=1000" "$OUT"
    local id=1000
    eq "pending: Waiting" Waiting "$(oar_state $id)"
    wait_for 10 "Running" eval '[[ $(oar_state $id) == Running ]]'
    wait_for 5 "marker" test -s "$MARK/$id"
    eq "job env OAR_JOB_ID OAR_JOBID, cwd = submission dir" "1000 1000 $WORK" "$(cat "$MARK/$id" 2>/dev/null)"
    check "-O with %jobid%" test -e "$WORK/logs-oar/1000.out"
    run oardel $id
    eq "oardel output" $'0:Deleting the job = 1000 ...REGISTERED.\nThe job(s) [ 1000 ] will be deleted in a near future.' "$RC:$OUT"
    eq "deleted job: Error" Error "$(oar_state $id)"
    run oardel $id
    eq "oardel again: exit 6" "6:Deleting the job = 1000 ...ERROR.:Cannot frag 1000 ; This job was already killed." "$RC:$OUT:$ERR"

    printf '#!/bin/sh\nexit 3\n' >"$WORK/exit3.sh"
    chmod +x "$WORK/exit3.sh"
    run oarsub -S "$WORK/exit3.sh"
    local j3=1001
    wait_for 10 "exit-3 job: Terminated" eval '[[ $(oar_state $j3) == Terminated ]]'
    eq "oarstat -fJ: exit_code 768 (3 << 8)" 768 "$(oarstat -f -J -j $j3 | json_get "d['$j3']['exit_code']")"
    eq "oarstat -J (no -f) has no exit_code" False "$(oarstat -J -j $j3 | json_get "'exit_code' in d['$j3']")"

    local before
    before=$(state_snapshot)
    run oarsub -q nosuch -S "$WORK/oar-job.sh"
    eq "unknown queue: exit 248 + message" "248:# Error: queue nosuch does not exist.:" "$RC:$ERR:$OUT"
    eq "  ... nothing created" "$before" "$(state_snapshot)"

    run oarstat -J -j 99999
    eq "oarstat -J unknown id: 'null', exit 0" "0:null" "$RC:$OUT"
    run oarstat -J -j $id -j 99999
    eq "  ... known job still printed" "['1000']" "$(printf '%s' "$OUT" | json_get 'list(d)')"
    run oardel 99999
    eq "oardel unknown id: exit 1" "1:Deleting the job = 99999 ...ERROR.:Cannot frag 99999 ; You are not the right user." "$RC:$OUT:$ERR"
}

# --------------------------------------------------------------------------
test_htcondor() {
    use_system htcondor
    cat >"$WORK/marker.sub" <<EOF
Executable = /bin/sh
Arguments = "-c 'grep -h -e ^ClusterId -e ^ProcId \$\$_CONDOR_JOB_AD > $MARK/\$(ClusterId); echo FOO=\$\$FOO >> $MARK/\$(ClusterId); sleep 60'"
Environment = "FOO=bar"
RequestCpus = 1
RequestMemory = 100
Output = $WORK/logs-htcondor/\$(ClusterId).out
Error = $WORK/logs-htcondor/\$(ClusterId).err
Log = $WORK/logs-htcondor/\$(ClusterId).log
Queue
EOF
    # $$ is not special to condor_submit; the shell sees $_CONDOR_JOB_AD
    sed -i 's/\$\$/$/g' "$WORK/marker.sub"
    cq_status() { condor_q -json -attributes ClusterId,ProcId,JobStatus "$1" | json_get "d[0]['JobStatus']" 2>/dev/null; }
    export RDASK_STANDIN_PENDING_SECONDS=2
    run condor_submit "$WORK/marker.sub"
    unset RDASK_STANDIN_PENDING_SECONDS
    eq "condor_submit output" $'Submitting job(s).\n1 job(s) submitted to cluster 1000.' "$OUT"
    local id=1000
    eq "pending: JobStatus 1" 1 "$(cq_status $id)"
    eq "  ... only the asked attributes" "['ClusterId', 'JobStatus', 'ProcId']" "$(condor_q -json -attributes ClusterId,ProcId,JobStatus $id | json_get 'sorted(d[0])')"
    wait_for 10 "JobStatus 2" eval '[[ $(cq_status $id) == 2 ]]'
    wait_for 5 "marker" eval '[[ $(wc -l <"$MARK/$id" 2>/dev/null) == 3 ]]'
    eq "job ad has ClusterId/ProcId, Environment applied" $'ClusterId = 1000\nProcId = 0\nFOO=bar' "$(cat "$MARK/$id" 2>/dev/null)"
    run condor_rm $id
    eq "condor_rm output" "0:All jobs in cluster 1000 have been marked for removal" "$RC:$OUT"
    run condor_q -json $id
    eq "removed job left the queue: no output" "0:" "$RC:$OUT"
    run condor_rm $id
    eq "condor_rm again: exit 1 + message" "1:Couldn't find/remove all jobs in cluster 1000" "$RC:$ERR"
    contains "user log: aborted" "Job was aborted." "$(cat "$WORK/logs-htcondor/1000.log")"

    cat >"$WORK/exit3.sub" <<EOF
executable = /bin/sh
arguments = "-c 'exit 3'"
log = $WORK/logs-htcondor/exit3.log
queue
EOF
    run condor_submit "$WORK/exit3.sub"
    local j3=1001
    wait_for 10 "exit-3 job left the queue" eval '[[ -z $(condor_q -json $j3) ]]'
    contains "user log: return value 3" "(1) Normal termination (return value 3)" "$(cat "$WORK/logs-htcondor/exit3.log")"

    local before
    before=$(state_snapshot)
    printf 'executable = /nonexistent/prog\nqueue\n' >"$WORK/bad.sub"
    run condor_submit "$WORK/bad.sub"
    eq "missing executable rejected" "1:ERROR: Executable file /nonexistent/prog does not exist" "$RC:$ERR"
    eq "  ... nothing created" "$before" "$(state_snapshot)"

    run condor_q -json 99999
    eq "condor_q -json unknown id: empty, exit 0" "0:" "$RC:$OUT"
    run condor_rm 99999
    eq "condor_rm unknown id: exit 1" "1:Couldn't find/remove all jobs in cluster 99999" "$RC:$ERR"
}

systems=("$@")
((${#systems[@]})) || systems=(pbs moab lsf oar htcondor)
for s in "${systems[@]}"; do
    "test_$s"
done
# no job process may survive its cancellation
for pg in "$WORK"/state-*/jobs/*/pgid; do
    [[ -f $pg ]] || continue
    d=$(dirname "$pg")
    if [[ -f $d/cancelled ]] && ps -o stat= --sid "$(<"$pg")" 2>/dev/null | grep -qv '^Z'; then
        CURRENT=${d#"$WORK"/state-}
        fail "processes of cancelled job $d still alive"
    fi
done
printf '\n%s checks, %s failed\n' "$CHECKS" "$FAILS"
((FAILS == 0))
