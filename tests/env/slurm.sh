#!/usr/bin/env bash
# Configure and start a real one-node SLURM (Debian 12: slurm-wlm 22.05) on
# this host, for the test suite.
#
# - Writes /etc/slurm/slurm.conf for `hostname` (only when its content differs).
# - Starts munged, slurmctld and slurmd if they are not running (there is no
#   systemd here, so nothing else starts them). A daemon that died stays a
#   zombie for a while on this machine, so liveness ignores state Z.
# - If the config changed while the daemons were running, restarts them.
# - Waits, with a deadline, until `sinfo` shows the node usable; resumes it if
#   it is DOWN/DRAINED.
#
# Already up and unchanged: one `sinfo` call, well under a second.
# Needs install.sh to have run (packages slurm-wlm, munge).
set -euo pipefail

HOST=$(hostname)
PARTITION=debug
CONF=/etc/slurm/slurm.conf
DEADLINE_S=${SLURM_UP_TIMEOUT:-60}
LOGDIR=/var/log/slurm

log() { echo "slurm.sh: $*"; }
die() { echo "slurm.sh: ERROR: $*" >&2; exit 1; }

# alive NAME: true if a process whose command name is NAME exists and is not
# a zombie.
# pgrep would also match zombies; ps shows the state so they can be skipped.
# shellcheck disable=SC2009
alive() { ps -C "$1" -o stat= 2>/dev/null | grep -qv '^Z'; }

# Daemons start with a clean environment, the same whoever runs this script
# (a developer's shell, CI). Jobs get the *submitter's* environment
# (sbatch --export=ALL is the default), not the daemons'.
daemon_env() {
  env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"
}

# stop_pidfile FILE NAME: SIGTERM the daemon recorded in FILE (if it is NAME)
# and wait, bounded, until it is gone (zombies count as gone).
stop_pidfile() {
  local file=$1 name=$2 pid end
  [[ -s $file ]] || return 0
  pid=$(<"$file")
  [[ $(ps -p "$pid" -o comm= 2>/dev/null) == "$name" ]] || return 0
  kill "$pid" 2>/dev/null || true
  end=$((SECONDS + 20))
  while ps -p "$pid" -o stat= 2>/dev/null | grep -qv '^Z'; do
    ((SECONDS < end)) || die "$name (pid $pid) did not stop within 20 s"
    sleep 0.2
  done
}

# ---------------------------------------------------------------- slurm.conf
# Choices, and why:
# - SlurmUser=root, proctrack/linuxproc, task/none, no cgroups: this sandbox
#   has no systemd and no usable cgroup hierarchy for slurmd. (So no
#   cgroup.conf is needed: nothing loads the cgroup plugins.)
# - SlurmdParameters=config_overrides: the node announces the CPUs/memory
#   written here (72 CPUs, 72000 MB) instead of the VM's 2 cores, so tests can
#   request several cpus per job and run many jobs at once.
# - DefMemPerCPU=1000: with CR_Core_Memory a job without --mem would otherwise
#   be given the whole node's memory, and jobs would run one at a time.
# - MinJobAge=30: a finished job stays visible (squeue -t all, scontrol show
#   job) for 30 to ~90 s: slurmctld purges jobs older than MinJobAge once a
#   minute. Then `squeue -j ID` / `scontrol show job ID` say "Invalid job id".
# - KillWait=5: scancel'd jobs get SIGKILL 5 s after SIGTERM (default 30).
# - SchedulerParameters=batch_sched_delay=0: start a submitted batch job at
#   once (measured: ~0.6 s from sbatch to COMPLETED for `echo hi`, instead of
#   ~2-3 s). The first job after a slurmctld restart still waits ~3 s.
# - ReturnToService=2: a node that was DOWN for not responding comes back as
#   soon as slurmd registers (e.g. after a machine restart).
# - No accounting storage: sacct does not work; use squeue / scontrol.
NEW_CONF=$(cat <<EOF
# Written by tests/env/slurm.sh (rdask-jobqueue test environment). Do not edit:
# the script rewrites it when its content differs.
ClusterName=rdask
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CryptoType=crypto/munge
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
DefMemPerCPU=1000
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
ReturnToService=2
SlurmdParameters=config_overrides
MinJobAge=30
KillWait=5
InactiveLimit=0
SchedulerParameters=batch_sched_delay=0
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldLogFile=$LOGDIR/slurmctld.log
SlurmdLogFile=$LOGDIR/slurmd.log
NodeName=$HOST CPUs=72 RealMemory=72000 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
)

conf_changed=0
if [[ ! -f $CONF ]] || [[ $(<"$CONF") != "$NEW_CONF" ]]; then
  mkdir -p /etc/slurm
  printf '%s\n' "$NEW_CONF" >"$CONF.tmp"
  mv "$CONF.tmp" "$CONF"
  conf_changed=1
  log "wrote $CONF"
fi

# Fast path: everything running, config unchanged, node usable.
node_state() { sinfo -h -N -n "$HOST" -o '%T' 2>/dev/null | head -n1; }
usable() { [[ $1 =~ ^(idle|mixed|allocated|completing)$ ]]; }
if ((conf_changed == 0)) && alive munged && alive slurmctld && alive slurmd; then
  st=$(node_state || true)
  if usable "$st"; then
    log "already up (node $HOST $st, partition $PARTITION)"
    exit 0
  fi
fi

# ---------------------------------------------------------------- munge
# munged refuses to start unless the key is 0400/0600 owned by munge and its
# socket dir (/run/munge, lost at every boot) exists and is owned by munge.
if [[ ! -s /etc/munge/munge.key ]]; then
  install -d -o munge -g munge -m 0700 /etc/munge
  dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  log "created /etc/munge/munge.key"
fi
chown munge:munge /etc/munge/munge.key
chmod 0400 /etc/munge/munge.key
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge
if ! alive munged; then
  rm -f /run/munge/munged.pid # stale after a restart; munged checks it
  daemon_env runuser -u munge -- /usr/sbin/munged
  log "started munged"
fi
end=$((SECONDS + 10))
until munge -n 2>/dev/null | unmunge >/dev/null 2>&1; do
  ((SECONDS < end)) || die "munge does not answer (see /var/log/munge/munged.log)"
  sleep 0.1
done

# ---------------------------------------------------------------- slurm daemons
install -d -m 0755 /var/spool/slurmctld /var/spool/slurmd "$LOGDIR"

if ((conf_changed)); then
  # Node definitions and most parameters need a daemon restart, not just
  # `scontrol reconfigure`. Only the daemons named in our pid files are stopped.
  if alive slurmd || alive slurmctld; then log "config changed: restarting daemons"; fi
  stop_pidfile /run/slurmd.pid slurmd
  stop_pidfile /run/slurmctld.pid slurmctld
fi

if ! alive slurmctld; then
  daemon_env /usr/sbin/slurmctld || die "slurmctld failed to start (see $LOGDIR/slurmctld.log)"
  log "started slurmctld"
fi
slurmd_started_at=
if ! alive slurmd; then
  slurmd_started_at=$(date +%s)
  daemon_env /usr/sbin/slurmd || die "slurmd failed to start (see $LOGDIR/slurmd.log)"
  log "started slurmd"
fi

# registered: true once the slurmd we started has registered with slurmctld.
# (Right after a restart slurmctld reports the node `idle` from its saved
# state before slurmd has registered; SlurmdStartTime changes on registration.)
registered() {
  [[ -z $slurmd_started_at ]] && return 0
  local t
  t=$(scontrol show node "$HOST" 2>/dev/null | grep -o 'SlurmdStartTime=[^ ]*' | cut -d= -f2)
  [[ -n $t && $t != None ]] && (($(date -d "$t" +%s 2>/dev/null || echo 0) >= slurmd_started_at))
}

# ---------------------------------------------------------------- wait
# Wait until the node is usable. DOWN/DRAIN (e.g. left over in the saved state
# from an earlier run) is resumed; "*" (not responding yet) and "unknown" just
# need slurmd to register, which takes a second or two.
end=$((SECONDS + DEADLINE_S))
resumed=0
while :; do
  st=$(node_state || true)
  usable "$st" && registered && break
  case $st in
    down | drain* | fail*)
      if ((resumed == 0)); then
        scontrol update NodeName="$HOST" State=RESUME >/dev/null 2>&1 || true
        log "node $HOST was $st: resumed"
        resumed=1
      fi
      ;;
  esac
  if ((SECONDS >= end)); then
    sinfo -N -l >&2 || true
    alive slurmctld || echo "slurmctld is not running" >&2
    alive slurmd || echo "slurmd is not running" >&2
    die "node $HOST not usable after ${DEADLINE_S}s (state '${st:-none}'); logs in $LOGDIR"
  fi
  sleep 0.2
done
log "up (node $HOST $st, partition $PARTITION)"
