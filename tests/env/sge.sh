#!/usr/bin/env bash
# Configure and start a real one-node Grid Engine (Debian 12: gridengine 8.1.9)
# on this host, for the test suite.
#
# The Debian packages (install.sh, with debconf preseeds) already created the
# cell `default` under SGE_ROOT=/var/lib/gridengine with this host as master
# and as admin host, and root as manager. This script:
#   - fixes the host-name trap (127.0.0.1 resolves to `localhost` first, and
#     qmaster refuses clients whose name differs) with host_aliases,
#   - starts sge_qmaster and sge_execd with a clean environment (jobs inherit
#     execd's environment, so the caller's shell must not leak into them),
#   - loads the test configuration (see `configure` below), only when this
#     script or the host name changed since it was last loaded,
#   - waits, with a deadline, until the queue instance on this host is usable.
# Already up: two cheap checks (processes, one qstat), about a second.
#
# Client commands need no environment: Debian's /usr/bin/q* are wrappers that
# default to SGE_ROOT=/var/lib/gridengine, SGE_CELL=default. tests/env/sge-env.sh
# exports them anyway for code that looks at $SGE_ROOT.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=sge-env.sh
. "$HERE/sge-env.sh"

HOST=$(hostname)
QUEUE=all.q                 # the one queue; jobs go there without -q too
PE=smp                      # shared-memory PE: all slots on one host
SLOTS=8                     # more than the 2 cores: many small test jobs at once
HOST_H_VMEM=64G             # h_vmem capacity of the host (8 slots x 4G default, with room)
DEADLINE_S=${SGE_UP_TIMEOUT:-60}
COMMON=$SGE_ROOT/$SGE_CELL/common
STARTER=$COMMON/rdask-starter.sh   # queue starter_method, see configure
STAMP=$COMMON/.rdask-test-config
# The configuration loaded is a function of this script and the host name.
WANT_STAMP="$(sha256sum "${BASH_SOURCE[0]}" | cut -d' ' -f1) $HOST"

log() { echo "sge.sh: $*"; }
die() { echo "sge.sh: ERROR: $*" >&2; exit 1; }

# quiet CMD...: run CMD, hide its chatter ("root@vm modified ..." goes to
# stderr), but show it and stop if CMD fails.
quiet() {
  local out
  out=$("$@" 2>&1) || { printf '%s\n' "$out" >&2; die "failed: $*"; }
}

# alive NAME: a process with command name NAME exists and is not a zombie
# (a daemon that exited stays a zombie for a while here: PID 1 does not reap).
# pgrep would also match zombies; ps shows the state so they can be skipped.
# shellcheck disable=SC2009
alive() { ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'; }

# The daemons get only what they need; anything else would leak into jobs.
daemon_env() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    HOME=/root SGE_ROOT="$SGE_ROOT" SGE_CELL="$SGE_CELL" "$@"
}

# queue_state: the state column of `qstat -f` for QUEUE@HOST:
#   "ok"   usable (no state flags, load reported)
#   flags  e.g. "au" (execd not heard from yet), "E" (error), "d" (disabled)
#   ""     no such queue instance (or qmaster not answering)
queue_state() {
  qstat -f -q "$QUEUE@$HOST" 2>/dev/null | awk -v q="$QUEUE@$HOST" '
    $1 == q { if (NF == 5 && $4 != "-NA-") print "ok"; else print (NF >= 6 ? $6 : "au"); exit }'
}

# ---------------------------------------------------------------- fast path
if alive sge_qmaster && alive sge_execd && [[ -f $STAMP && $(<"$STAMP") == "$WANT_STAMP" ]] &&
  [[ -x $STARTER ]] && [[ $(queue_state) == ok ]]; then
  log "already up (queue $QUEUE@$HOST)"
  exit 0
fi

[[ -d $COMMON ]] || die "$COMMON missing: run tests/env/install.sh first (gridengine packages with debconf preseeds)"

# ---------------------------------------------------------------- host name
# 127.0.0.1 resolves to `localhost` before `$HOST`: map it back to $HOST.
if [[ $(cat "$COMMON/host_aliases" 2>/dev/null) != "$HOST localhost" ]]; then
  echo "$HOST localhost" >"$COMMON/host_aliases"
  log "wrote $COMMON/host_aliases"
fi
# act_qmaster names the master host; it was written at install time, keep it
# right if the host name changed since.
if [[ $(cat "$COMMON/act_qmaster" 2>/dev/null) != "$HOST" ]]; then
  echo "$HOST" >"$COMMON/act_qmaster"
fi

# ---------------------------------------------------------------- qmaster
if ! alive sge_qmaster; then
  daemon_env /usr/sbin/sge_qmaster || die "sge_qmaster failed to start (see /var/spool/gridengine/qmaster/messages)"
  log "started sge_qmaster"
fi
end=$((SECONDS + DEADLINE_S))
until qconf -sh >/dev/null 2>&1; do
  ((SECONDS < end)) || die "qmaster does not answer after ${DEADLINE_S}s (see /var/spool/gridengine/qmaster/messages)"
  sleep 0.2
done

# ---------------------------------------------------------------- configuration
TMPD=
trap 'if [[ -n $TMPD ]]; then rm -rf "$TMPD"; fi' EXIT
# Whole object files are written and loaded (qconf -A*/-M*): the built-in
# queue template refers to PEs `make`/`mpi` that do not exist and fails.
configure() {
  local d
  d=$(mktemp -d)
  TMPD=$d # removed by the EXIT trap, also when a qconf fails

  # Global config (the file must be named `global` for -Mconf):
  # - min_uid/min_gid 0: the tests run as root, which is refused by default.
  # - load_report_time 5 s: the execd's first load report (until which the
  #   queue is in state "au") and later ones come sooner.
  # - ENABLE_ADDGRP_KILL: qdel kills every process of a job, not just the
  #   process group of the script.
  qconf -sconf global | sed -E \
    -e 's/^(min_uid[[:space:]]+).*/\10/' \
    -e 's/^(min_gid[[:space:]]+).*/\10/' \
    -e 's/^(load_report_time[[:space:]]+).*/\100:00:05/' \
    -e 's/^(execd_params[[:space:]]+).*/\1ENABLE_ADDGRP_KILL=TRUE/' \
    >"$d/global"
  quiet qconf -Mconf "$d/global"

  # Scheduler: run every second and right after submits/finishes (default is
  # every 15 s); no load adjustment (a busy 2-core VM must not hold jobs back).
  qconf -ssconf | sed -E \
    -e 's/^(schedule_interval[[:space:]]+).*/\10:0:1/' \
    -e 's/^(flush_submit_sec[[:space:]]+).*/\11/' \
    -e 's/^(flush_finish_sec[[:space:]]+).*/\11/' \
    -e 's/^(job_load_adjustments[[:space:]]+).*/\1NONE/' \
    -e 's/^(load_adjustment_decay_time[[:space:]]+).*/\10:0:0/' \
    >"$d/sched"
  quiet qconf -Msconf "$d/sched"

  # h_vmem consumable with default 4G per slot: users pass
  # `-l h_vmem=...` (dask-jobqueue's resource_spec). A default of 0 would mean
  # a 10 MB ulimit; no capacity anywhere would mean jobs never schedule.
  qconf -sc | awk '$1 == "h_vmem" { $6 = "YES"; $7 = "4G" } { print }' >"$d/complex"
  quiet qconf -Mc "$d/complex"

  # Starter method: Grid Engine's shepherd drops TMPDIR for jobs run as root
  # (seen here: a job of user nobody gets TMPDIR=/tmp/<job>.<task>.<queue>,
  # a root job only TMP=...). The tests run as root; restore TMPDIR from TMP
  # so jobs see what they would see on a site as a normal user. The job is
  # exec'd, so its #! line is still honoured (shell_start_mode unix_behavior).
  cat >"$STARTER" <<'EOF'
#!/bin/sh
# Written by rdask-jobqueue tests/env/sge.sh: the queue's starter_method.
# Root jobs lose TMPDIR in Grid Engine 8.1.9; give it back from TMP.
if [ -z "${TMPDIR:-}" ] && [ -n "${TMP:-}" ]; then TMPDIR=$TMP; export TMPDIR; fi
exec "$@"
EOF
  chmod 0755 "$STARTER"

  # Parallel environment: all slots on one host.
  cat >"$d/pe" <<EOF
pe_name            $PE
slots              999
user_lists         NONE
xuser_lists        NONE
start_proc_args    NONE
stop_proc_args     NONE
allocation_rule    \$pe_slots
control_slaves     TRUE
job_is_first_task  TRUE
urgency_slots      min
accounting_summary FALSE
qsort_args         NONE
EOF
  if qconf -sp "$PE" >/dev/null 2>&1; then quiet qconf -Mp "$d/pe"; else quiet qconf -Ap "$d/pe"; fi

  # Submit host (admin host is not enough for qsub).
  qconf -ss 2>/dev/null | grep -qx "$HOST" || quiet qconf -as "$HOST"

  # Execution host with its h_vmem capacity. (The execd also registers the
  # host by itself on first start; both paths end here.)
  cat >"$d/exechost" <<EOF
hostname              $HOST
load_scaling          NONE
complex_values        h_vmem=$HOST_H_VMEM
user_lists            NONE
xuser_lists           NONE
projects              NONE
xprojects             NONE
usage_scaling         NONE
report_variables      NONE
EOF
  if qconf -se "$HOST" >/dev/null 2>&1; then quiet qconf -Me "$d/exechost"; else quiet qconf -Ae "$d/exechost"; fi

  # The queue:
  # - load_thresholds NONE: never put the queue in alarm state on a busy VM.
  # - shell_start_mode unix_behavior + shell /bin/bash: honour the script's
  #   #! line (posix_compliant ignores it and runs everything with `shell`).
  # - slots 8, pe_list smp, rerun FALSE, starter_method (TMPDIR, above).
  cat >"$d/queue" <<EOF
qname                 $QUEUE
hostlist              $HOST
seq_no                0
load_thresholds       NONE
suspend_thresholds    NONE
nsuspend              1
suspend_interval      00:05:00
priority              0
min_cpu_interval      00:05:00
processors            UNDEFINED
qtype                 BATCH INTERACTIVE
ckpt_list             NONE
pe_list               $PE
rerun                 FALSE
slots                 $SLOTS
tmpdir                /tmp
shell                 /bin/bash
prolog                NONE
epilog                NONE
shell_start_mode      unix_behavior
starter_method        $STARTER
suspend_method        NONE
resume_method         NONE
terminate_method      NONE
notify                00:00:60
owner_list            NONE
user_lists            NONE
xuser_lists           NONE
subordinate_list      NONE
complex_values        NONE
projects              NONE
xprojects             NONE
calendar              NONE
initial_state         default
s_rt                  INFINITY
h_rt                  INFINITY
s_cpu                 INFINITY
h_cpu                 INFINITY
s_fsize               INFINITY
h_fsize               INFINITY
s_data                INFINITY
h_data                INFINITY
s_stack               INFINITY
h_stack               INFINITY
s_core                INFINITY
h_core                INFINITY
s_rss                 INFINITY
h_rss                 INFINITY
s_vmem                INFINITY
h_vmem                INFINITY
EOF
  if qconf -sq "$QUEUE" >/dev/null 2>&1; then quiet qconf -Mq "$d/queue"; else quiet qconf -Aq "$d/queue"; fi
}

if [[ ! -f $STAMP || $(<"$STAMP") != "$WANT_STAMP" ]]; then
  configure
  echo "$WANT_STAMP" >"$STAMP"
  log "loaded configuration (queue $QUEUE, PE $PE, $SLOTS slots, h_vmem default 4G)"
fi

# ---------------------------------------------------------------- execd
if ! alive sge_execd; then
  daemon_env /usr/sbin/sge_execd || die "sge_execd failed to start (see /var/spool/gridengine/execd/*/messages)"
  log "started sge_execd"
fi

# ---------------------------------------------------------------- wait
# "au" (alarm/unknown) just means the execd has not reported yet. Error (E)
# and disabled (d) states can be left over from an earlier run: clear them.
end=$((SECONDS + DEADLINE_S))
cleared=0
while :; do
  st=$(queue_state)
  [[ $st == ok ]] && break
  if ((cleared == 0)) && [[ $st == *[EdsSC]* ]]; then
    qmod -c "$QUEUE@$HOST" >/dev/null 2>&1 || true
    qmod -e "$QUEUE@$HOST" >/dev/null 2>&1 || true
    qmod -us "$QUEUE@$HOST" >/dev/null 2>&1 || true
    log "queue $QUEUE@$HOST was in state '$st': cleared/enabled"
    cleared=1
  fi
  if ((SECONDS >= end)); then
    qstat -f >&2 || true
    alive sge_execd || echo "sge_execd is not running" >&2
    die "queue $QUEUE@$HOST not usable after ${DEADLINE_S}s (state '${st:-none}')"
  fi
  sleep 0.2
done
log "up (queue $QUEUE@$HOST, PE $PE)"
