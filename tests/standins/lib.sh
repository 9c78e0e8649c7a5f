# shellcheck shell=bash
# lib.sh - logic shared by the batch-system STAND-INS under tests/standins/.
#
# These are NOT the real PBS/Moab/LSF/OAR/HTCondor tools. They reproduce the
# command lines and outputs of the real tools closely enough for rdask-jobqueue's
# integration tests, and they really run the submitted job (see README.md).
#
# Each command sources this file after setting STANDIN_SYSTEM, then calls
# standin_init. Running this file as a program with "__run JOBDIR" is how a
# submitted job is executed in the background (see standin_launch).
#
# State (per job, under $STANDIN_STATE/jobs/<id>/):
#   meta       bash "declare -g" lines: J_* variables, J_ENV and J_ARGV arrays
#   script     copy of the submitted script (or submit description)
#   pgid       pid of the runner; the runner is a session leader (setsid), so
#              this is also the job's session id and process group id
#   started    epoch when the job left the pending phase and started running
#   ended      epoch when the job finished or was cancelled
#   exit       exit code of the job script (written when it finished by itself)
#   cancelled  "<from-state> <signal>" when cancelled (from pending or running)
#   fragged    OAR only: oardel was already registered for this job

STANDIN_LIB_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

standin_now() { printf '%(%s)T' -1; }

standin_err() { printf '%s\n' "$*" >&2; }

# standin_init SYSTEM: state directory, defaults, configuration from env.
standin_init() {
    STANDIN_SYSTEM=$1
    STANDIN_STATE=${RDASK_STANDIN_STATE:-/tmp/rdask-standin-$STANDIN_SYSTEM}
    mkdir -p "$STANDIN_STATE/jobs" || exit 1
    STANDIN_PENDING=${RDASK_STANDIN_PENDING_SECONDS:-0}
    [[ $STANDIN_PENDING =~ ^[0-9]+([.][0-9]+)?$ ]] || STANDIN_PENDING=0
    STANDIN_KEEP=${RDASK_STANDIN_KEEP_SECONDS:-300}
    [[ $STANDIN_KEEP =~ ^[0-9]+$ ]] || STANDIN_KEEP=300
    STANDIN_KILL_DELAY=${RDASK_STANDIN_KILL_DELAY:-3}
    [[ $STANDIN_KILL_DELAY =~ ^[0-9]+$ ]] || STANDIN_KILL_DELAY=3
    STANDIN_HOST=$(hostname 2>/dev/null || echo localhost)
    STANDIN_HOST=${STANDIN_HOST%%.*}
    STANDIN_USER=$(id -un 2>/dev/null || echo "${USER:-root}")
    local default_queues
    case $STANDIN_SYSTEM in
        pbs) default_queues="workq batch"; STANDIN_DEFAULT_QUEUE=workq ;;
        moab) default_queues="workq batch"; STANDIN_DEFAULT_QUEUE=batch ;;
        lsf) default_queues="normal"; STANDIN_DEFAULT_QUEUE=normal ;;
        oar) default_queues="default"; STANDIN_DEFAULT_QUEUE=default ;;
        *) default_queues=""; STANDIN_DEFAULT_QUEUE="" ;;
    esac
    STANDIN_QUEUES=${RDASK_STANDIN_QUEUES:-$default_queues}
    if [[ -n ${RDASK_STANDIN_DEFAULT_QUEUE:-} ]]; then
        STANDIN_DEFAULT_QUEUE=$RDASK_STANDIN_DEFAULT_QUEUE
    elif ! standin_queue_ok "$STANDIN_DEFAULT_QUEUE"; then
        STANDIN_DEFAULT_QUEUE=${STANDIN_QUEUES%% *}
    fi
}

standin_queue_ok() {
    local q
    for q in $STANDIN_QUEUES; do [[ $q == "$1" ]] && return 0; done
    return 1
}

# standin_alloc_id: print the next job id (counter starts at 1000), under flock.
standin_alloc_id() {
    (
        flock -x 9 || exit 1
        local n=1000
        if [[ -s $STANDIN_STATE/counter ]]; then
            n=$(<"$STANDIN_STATE/counter")
            [[ $n =~ ^[0-9]+$ ]] || n=1000
        fi
        printf '%s\n' "$((n + 1))" >"$STANDIN_STATE/counter.tmp" &&
            mv -f "$STANDIN_STATE/counter.tmp" "$STANDIN_STATE/counter"
        printf '%s\n' "$n"
    ) 9>>"$STANDIN_STATE/counter.lock"
}

standin_jobdir() { printf '%s/jobs/%s' "$STANDIN_STATE" "$1"; }

# standin_job_ids: all known job ids, ascending.
standin_job_ids() {
    local d
    for d in "$STANDIN_STATE"/jobs/*/; do
        d=${d%/}
        d=${d##*/}
        [[ $d =~ ^[0-9]+$ && -f $STANDIN_STATE/jobs/$d/meta ]] && printf '%s\n' "$d"
    done | sort -n
}

# standin_load JOBDIR: J_* variables of that job.
standin_load() {
    unset "${!J_@}"
    # shellcheck disable=SC1091
    source "$1/meta"
}

# standin_save_meta JOBDIR VAR...: store variables (global on reload).
standin_save_meta() {
    local jd=$1
    shift
    declare -p "$@" | sed -E 's/^declare -(-|([a-zA-Z]+)) /declare -g\2 /' >"$jd/meta.tmp" &&
        mv -f "$jd/meta.tmp" "$jd/meta"
}

standin_write() { # standin_write FILE CONTENT: atomic small write
    printf '%s\n' "$2" >"$1.tmp.$$" && mv -f "$1.tmp.$$" "$1"
}

# Process liveness. A session leader that exited may stay a zombie here for a
# while (PID 1 is not an init), so zombies do not count as alive.
standin_session_alive() {
    local sid=$1 st
    [[ $sid =~ ^[0-9]+$ ]] || return 1
    while read -r st; do
        [[ $st == Z* ]] || return 0
    done < <(ps -o stat= --sid "$sid" 2>/dev/null)
    return 1
}

# standin_state JOBDIR: sets S_STATE (pending|running|finished|cancelled),
# S_EXIT (exit code, "" if none), S_SUBMIT, S_START (epoch or ""), S_END,
# S_CANCEL_FROM (pending|running) and S_CANCEL_SIG.
standin_state() {
    local jd=$1 c
    S_EXIT="" S_START="" S_END="" S_CANCEL_FROM="" S_CANCEL_SIG=""
    S_SUBMIT=$(<"$jd/submitted")
    [[ -f $jd/started ]] && S_START=$(<"$jd/started")
    if [[ -f $jd/cancelled ]]; then
        c=$(<"$jd/cancelled")
        S_CANCEL_FROM=${c%% *}
        S_CANCEL_SIG=${c##* }
        S_END=$(<"$jd/ended")
        S_STATE=cancelled
        return
    fi
    if [[ -f $jd/exit ]]; then
        S_EXIT=$(<"$jd/exit")
        S_END=$(<"$jd/ended")
        S_STATE=finished
        return
    fi
    if standin_session_alive "$(cat "$jd/pgid" 2>/dev/null)"; then
        if [[ -n $S_START ]]; then S_STATE=running; else S_STATE=pending; fi
        return
    fi
    if [[ -f $jd/cancelling ]]; then
        # being cancelled right now by another command, which records it
        c=$(<"$jd/cancelling")
        S_CANCEL_FROM=${c%% *}
        S_CANCEL_SIG=TERM
        S_END=$(standin_now)
        S_STATE=cancelled
        return
    fi
    # The runner is gone without recording anything (killed from outside):
    # record it as finished by SIGKILL.
    S_END=$(standin_now)
    standin_write "$jd/ended" "$S_END"
    standin_write "$jd/exit" 137
    S_EXIT=137
    S_STATE=finished
}

# standin_expired: true when the job ended more than KEEP seconds ago.
standin_expired() {
    [[ -n $S_END ]] && (($(standin_now) - S_END > STANDIN_KEEP))
}

# standin_visible ID: job exists and has not expired; loads J_* and S_*.
# standin_pbs_resolve OPERAND: sets R_ID (the stand-in's own id) and R_NAME (the id as
# PBS spells it) for `123`, `123.server`, or a subjob `123[4].server`. 1 when not an id.
standin_pbs_resolve() {
    [[ $1 =~ ^([0-9]+)(\[([0-9]+)\])?(\.[^@]*)?(@.*)?$ ]] || return 1
    local server=${RDASK_STANDIN_SERVER:-pbsserver}
    if [[ -n ${BASH_REMATCH[2]} ]]; then
        R_NAME="${BASH_REMATCH[1]}[${BASH_REMATCH[3]}].$server"
        R_ID=$(cat "$STANDIN_STATE/arrays/${BASH_REMATCH[1]}/${BASH_REMATCH[3]}" 2>/dev/null)
        [[ -n $R_ID ]] || R_ID=none
    else
        R_ID=${BASH_REMATCH[1]}
        R_NAME="$R_ID.$server"
    fi
    return 0
}

standin_visible() {
    local jd
    jd=$(standin_jobdir "$1")
    [[ $1 =~ ^[0-9]+$ && -f $jd/meta && -f $jd/pgid ]] || return 1
    standin_load "$jd"
    standin_state "$jd"
    ! standin_expired
}

# standin_signal_job JOBDIR SIGNAL: signal every process of the job except the
# runner itself (used by "send a signal" commands such as bkill -s).
standin_signal_job() {
    local jd=$1 sig=$2 sid pid
    sid=$(<"$jd/pgid")
    for pid in $(ps -o pid= --sid "$sid" 2>/dev/null); do
        [[ $pid == "$sid" ]] && continue
        kill -s "$sig" "$pid" 2>/dev/null
    done
}

# standin_cancel JOBDIR: cancel a pending or running job: SIGTERM to the whole
# session, SIGKILL after RDASK_STANDIN_KILL_DELAY seconds if still alive.
# Returns 0 when cancelled now, 1 when the job had already ended.
standin_cancel() {
    local jd=$1 from sid sig=TERM deadline
    standin_state "$jd"
    case $S_STATE in
        pending | running) from=$S_STATE ;;
        *) return 1 ;;
    esac
    sid=$(<"$jd/pgid")
    standin_write "$jd/cancelling" "$from"
    kill -TERM -- "-$sid" 2>/dev/null
    pkill -TERM -s "$sid" 2>/dev/null
    deadline=$(($(standin_now) + STANDIN_KILL_DELAY))
    while standin_session_alive "$sid" && (($(standin_now) < deadline)); do
        sleep 0.1
    done
    if standin_session_alive "$sid"; then
        sig=KILL
        kill -KILL -- "-$sid" 2>/dev/null
        pkill -KILL -s "$sid" 2>/dev/null
        deadline=$(($(standin_now) + 5))
        while standin_session_alive "$sid" && (($(standin_now) < deadline)); do
            sleep 0.1
        done
    fi
    if [[ -f $jd/exit ]]; then
        # It finished by itself before the signal reached it.
        rm -f "$jd/cancelling"
        return 1
    fi
    [[ $from == pending && -f $jd/started ]] && from=running
    standin_write "$jd/ended" "$(standin_now)"
    standin_write "$jd/cancelled" "$from $sig"
    standin_userlog_event "$jd" abort
    return 0
}

# --- job creation -----------------------------------------------------------

# standin_base_env: the minimal login-like environment real batch systems give
# a job (the caller adds the system's own variables). Sets array BASE_ENV.
standin_base_env() {
    BASE_ENV=("HOME=${HOME:-/root}" "PATH=${PATH:-/usr/bin:/bin}"
        "USER=$STANDIN_USER" "LOGNAME=$STANDIN_USER" "SHELL=${SHELL:-/bin/bash}")
    local v
    for v in LANG LC_ALL TZ; do
        [[ -n ${!v:-} ]] && BASE_ENV+=("$v=${!v}")
    done
}

# standin_full_env: the whole current environment as NAME=VALUE (array FULL_ENV),
# without the stand-ins' own RDASK_STANDIN_* settings.
standin_full_env() {
    FULL_ENV=()
    local name
    while IFS= read -r name; do
        [[ $name == RDASK_STANDIN_* ]] && continue
        FULL_ENV+=("$name=${!name}")
    done < <(compgen -e)
}

# standin_create_job ID: create the job directory from the caller's J_* vars,
# J_ENV and J_ARGV arrays, and the script file $JOB_SCRIPT_SRC (copied).
# Required: J_NAME J_WORKDIR J_STDOUT J_STDERR (J_STDERR="" = joined into
# stdout). Optional: J_APPEND=1 (append to output files), J_USERLOG.
standin_create_job() {
    local id=$1 jd
    jd=$(standin_jobdir "$id")
    mkdir -p "$jd" || return 1
    if [[ -n ${JOB_SCRIPT_SRC:-} ]]; then
        cp -- "$JOB_SCRIPT_SRC" "$jd/script" || return 1
        chmod 700 "$jd/script"
    fi
    J_ID=$id
    J_SYSTEM=$STANDIN_SYSTEM
    J_PENDING=$STANDIN_PENDING
    J_APPEND=${J_APPEND:-0}
    J_USERLOG=${J_USERLOG:-}
    standin_write "$jd/submitted" "$(standin_now)"
    standin_save_meta "$jd" "${!J_@}"
}

# standin_launch ID: start the runner detached (own session, stdin from
# /dev/null, no inherited output), and wait until it has registered itself.
standin_launch() {
    local jd i
    jd=$(standin_jobdir "$1")
    setsid env -u BASH_ENV -u ENV bash "$STANDIN_LIB_DIR/lib.sh" __run "$jd" </dev/null >/dev/null 2>&1 9>&- &
    for ((i = 0; i < 500; i++)); do
        [[ -f $jd/pgid ]] && return 0
        sleep 0.01
    done
    standin_err "stand-in: job runner did not start"
    return 1
}

# Fallback when an output path cannot be written: keep it in the state dir.
standin_open_ok() {
    local f=$1 dir
    dir=$(dirname -- "$f")
    [[ -d $dir ]] || return 1
    : >>"$f" 2>/dev/null
}

# The runner: pending phase, then the job, then the exit code.
standin_runner() {
    local jd=$1 rc out err
    standin_write "$jd/pgid" "$$"
    standin_load "$jd"
    if [[ $J_PENDING != 0 ]]; then sleep "$J_PENDING"; fi
    standin_write "$jd/started" "$(standin_now)"
    standin_userlog_event "$jd" execute
    out=$J_STDOUT
    err=$J_STDERR
    if [[ $J_SYSTEM == lsf ]]; then
        # LSF creates missing output directories.
        mkdir -p -- "$(dirname -- "$out")" 2>/dev/null
        [[ -n $err ]] && mkdir -p -- "$(dirname -- "$err")" 2>/dev/null
    fi
    standin_open_ok "$out" || out=$jd/stdout
    [[ -z $err ]] || standin_open_ok "$err" || err=$jd/stderr
    cd -- "$J_WORKDIR" 2>/dev/null || cd -- "${HOME:-/}" 2>/dev/null || cd /
    if [[ $J_APPEND == 1 ]]; then
        if [[ -z $err ]]; then
            env -i "${J_ENV[@]}" "${J_ARGV[@]}" </dev/null >>"$out" 2>&1
        else
            env -i "${J_ENV[@]}" "${J_ARGV[@]}" </dev/null >>"$out" 2>>"$err"
        fi
    else
        if [[ -z $err ]]; then
            env -i "${J_ENV[@]}" "${J_ARGV[@]}" </dev/null >"$out" 2>&1
        elif [[ $err == "$out" ]]; then
            env -i "${J_ENV[@]}" "${J_ARGV[@]}" </dev/null >"$out" 2>&1
        else
            env -i "${J_ENV[@]}" "${J_ARGV[@]}" </dev/null >"$out" 2>"$err"
        fi
    fi
    rc=$?
    standin_write "$jd/ended" "$(standin_now)"
    standin_write "$jd/exit" "$rc"
    standin_userlog_event "$jd" terminate "$rc"
    # Like a real batch system, end whatever the job left behind.
    trap '' TERM
    pkill -TERM -s "$$" 2>/dev/null
    exit 0
}

# HTCondor user log (the "Log =" file of a submit description): minimal events.
standin_userlog_event() {
    local jd=$1 ev=$2 rc=${3:-}
    [[ -n ${J_USERLOG:-} ]] || return 0
    local id ts addr
    id=$(printf '(%s.000.000)' "$(printf '%03d' "$J_ID")")
    ts=$(printf '%(%Y-%m-%d %H:%M:%S)T' -1)
    addr="<127.0.0.1:9618?addrs=127.0.0.1-9618&alias=$STANDIN_HOST>"
    {
        case $ev in
            submit) printf '000 %s %s Job submitted from host: %s\n...\n' "$id" "$ts" "$addr" ;;
            execute) printf '001 %s %s Job executing on host: %s\n...\n' "$id" "$ts" "$addr" ;;
            terminate) printf '005 %s %s Job terminated.\n\t(1) Normal termination (return value %s)\n...\n' "$id" "$ts" "$rc" ;;
            abort) printf '009 %s %s Job was aborted.\n\tvia condor_rm (by user %s)\n...\n' "$id" "$ts" "$STANDIN_USER" ;;
        esac
    } >>"$J_USERLOG" 2>/dev/null
}

# --- text helpers -------------------------------------------------------------

# standin_split_words STRING: shell-like word splitting without expansion
# ('...', "..." with \" and \\, backslash escapes). Result in array WORDS.
standin_split_words() {
    local s=$1 i c w="" inw=0 q=""
    WORDS=()
    for ((i = 0; i < ${#s}; i++)); do
        c=${s:i:1}
        if [[ $q == "'" ]]; then
            if [[ $c == "'" ]]; then q=""; else w+=$c; fi
        elif [[ $q == '"' ]]; then
            if [[ $c == '"' ]]; then
                q=""
            elif [[ $c == '\' && ${s:i+1:1} == [\"\\\$\`] ]]; then
                w+=${s:i+1:1}
                ((i++))
            else
                w+=$c
            fi
        elif [[ $c == "'" || $c == '"' ]]; then
            q=$c
            inw=1
        elif [[ $c == '\' ]]; then
            w+=${s:i+1:1}
            ((i++))
            inw=1
        elif [[ $c == [[:space:]] ]]; then
            if ((inw)); then WORDS+=("$w"); fi
            w=""
            inw=0
        else
            w+=$c
            inw=1
        fi
    done
    if ((inw)); then WORDS+=("$w"); fi
}

# standin_directives PREFIX FILE: the option words of the directive lines
# ("#PBS ...", "#BSUB ...") at the top of a script, up to the first line that
# is neither blank nor a comment. Result in array DIRECTIVE_WORDS.
standin_directives() {
    local prefix=$1 file=$2 line
    DIRECTIVE_WORDS=()
    while IFS= read -r line || [[ -n $line ]]; do
        line=${line%$'\r'}
        if [[ $line == "$prefix"[[:space:]]* ]]; then
            standin_split_words "${line#"$prefix"}"
            # a comment after the options ends them
            local w
            for w in "${WORDS[@]}"; do
                [[ $w == \#* ]] && break
                DIRECTIVE_WORDS+=("$w")
            done
        elif [[ $line =~ ^[[:space:]]*$ || $line =~ ^[[:space:]]*# ]]; then
            continue
        else
            break
        fi
    done <"$file"
}

standin_json_escape() {
    local s=$1
    s=${s//\\/\\\\}
    s=${s//\"/\\\"}
    s=${s//$'\n'/\\n}
    s=${s//$'\t'/\\t}
    s=${s//$'\r'/\\r}
    printf '%s' "$s"
}

standin_xml_escape() {
    local s=$1
    s=${s//&/&amp;}
    s=${s//</&lt;}
    s=${s//>/&gt;}
    s=${s//\"/&quot;}
    printf '%s' "$s"
}

# hh:mm:ss from seconds
standin_hms() {
    local t=${1:-0}
    ((t < 0)) && t=0
    printf '%02d:%02d:%02d' $((t / 3600)) $((t % 3600 / 60)) $((t % 60))
}

# --- PBS family (PBS Pro/OpenPBS qsub, Moab msub on Torque) -----------------

# standin_pbs_apply WORD...: apply qsub-style options (from the command line or
# from directive lines). Sets P_* variables; stops at the first operand, which
# goes with everything after it into P_ARGS. "--" starts an executable + args.
standin_pbs_apply() {
    local w opt val
    while (($#)); do
        w=$1
        shift
        if [[ $w == -- ]]; then
            P_DASHDASH=1
            P_ARGS=("$@")
            return 0
        fi
        if [[ $w == --* ]]; then
            case $w in
                --xml) P_XML=1 ;;
                --version) P_VERSION=1 ;;
                *) P_BAD="$w" ;;
            esac
            continue
        fi
        if [[ $w != -?* ]]; then
            P_ARGS=("$w" "$@")
            return 0
        fi
        opt=${w:1:1}
        case $opt in
            h) P_HOLD=1; continue ;;
            I | X | z | f | G | x | n) continue ;;
            V) P_ALLENV=1; continue ;;
        esac
        if [[ ${#w} -gt 2 ]]; then
            val=${w:2}
        elif (($#)); then
            val=$1
            shift
        else
            P_BAD="$w"
            return 1
        fi
        case $opt in
            N) P_NAME=$val ;;
            q) P_QUEUE=$val ;;
            o) P_OUT=$val ;;
            e) P_ERR=$val ;;
            j) P_JOIN=$val ;;
            A) P_ACCOUNT=$val ;;
            l) IFS=, read -r -a _res <<<"$val"; P_RES+=("${_res[@]}") ;;
            v) P_VLIST+=("$val") ;;
            S) P_SHELL=$val ;;
            d | w) P_WORKDIR=$val ;;
            W) P_WOPTS+=("$val") ;;
            C) P_PREFIX=$val ;;
            J | t) P_ARRAY=$val ;;
            P) P_PROJECT=$val ;;
            *) : ;; # accepted and ignored: -a -c -k -m -M -p -r -R -u -D -F -T -K -L ...
        esac
    done
    return 0
}

standin_pbs_reset() {
    P_NAME="" P_QUEUE="" P_OUT="" P_ERR="" P_JOIN="" P_ACCOUNT="" P_SHELL=""
    P_WORKDIR="" P_ARRAY="" P_PROJECT="" P_HOLD="" P_ALLENV="" P_XML="" P_BAD=""
    P_VERSION="" P_DASHDASH=""
    P_RES=() P_VLIST=() P_WOPTS=() P_ARGS=()
}

# standin_pbs_ncpus: cpus per node requested by -l (select=...:ncpus=N,
# ncpus=N, nodes=N:ppn=M), default 1.
standin_pbs_ncpus() {
    local r n=1
    for r in "${P_RES[@]}"; do
        case $r in
            select=*) [[ $r =~ :ncpus=([0-9]+) ]] && n=${BASH_REMATCH[1]} ;;
            ncpus=*) n=${r#ncpus=} ;;
            nodes=*) [[ $r =~ :ppn=([0-9]+) ]] && n=${BASH_REMATCH[1]} ;;
        esac
    done
    printf '%s' "$n"
}

# standin_abspath PATH [BASE]
standin_abspath() {
    local p=$1 base=${2:-$PWD}
    p=${p#*:} # drop a "host:" prefix (PBS paths may carry one)
    [[ $p == /* ]] || p=$base/$p
    printf '%s' "$p"
}

# standin_pbs_submit MODE ARG...: the whole of qsub (MODE=pbs) or msub (moab).
standin_pbs_submit() {
    local mode=$1
    shift
    local cmd=qsub server tmp_script="" script_src name submit_dir
    [[ $mode == moab ]] && cmd=msub
    server=${RDASK_STANDIN_SERVER:-$([[ $mode == pbs ]] && echo pbsserver || echo torqueserver)}
    submit_dir=$PWD
    standin_pbs_reset
    local -a cli=("$@")
    standin_pbs_apply "${cli[@]}" || {
        standin_err "$cmd: option requires an argument -- '${P_BAD#-}'"
        return 2
    }
    if [[ -n $P_VERSION ]]; then
        [[ $mode == pbs ]] && echo "pbs_version = 19.1.3" || echo "Version: moab server 9.1.3 (stand-in)"
        return 0
    fi
    local -a job_cmd=()
    if [[ -n $P_DASHDASH ]]; then
        job_cmd=("${P_ARGS[@]}")
        script_src=""
        name=STDIN
    elif ((${#P_ARGS[@]} > 0)); then
        script_src=${P_ARGS[0]}
        if [[ ! -r $script_src || -d $script_src ]]; then
            if [[ $mode == pbs ]]; then
                standin_err "qsub: script file:: No such file or directory"
            else
                standin_err "ERROR:  cannot read script file '$script_src'"
            fi
            return 1
        fi
        name=${script_src##*/}
    else
        tmp_script=$(mktemp "${TMPDIR:-/tmp}/standin-stdin.XXXXXX")
        cat >"$tmp_script"
        script_src=$tmp_script
        name=STDIN
    fi
    # directives first, command line second (the command line wins)
    local prefix=${P_PREFIX:-#PBS}
    if [[ -n $script_src ]]; then
        local -a dw=()
        standin_directives "$prefix" "$script_src"
        dw=("${DIRECTIVE_WORDS[@]}")
        if [[ $mode == moab ]]; then
            standin_directives "#MSUB" "$script_src"
            dw+=("${DIRECTIVE_WORDS[@]}")
        fi
        local -a keep_args=("${P_ARGS[@]}") keep_dd=$P_DASHDASH
        standin_pbs_reset
        standin_pbs_apply "${dw[@]}"
        P_ARGS=()
        standin_pbs_apply "${cli[@]}"
        P_ARGS=("${keep_args[@]}")
        P_DASHDASH=$keep_dd
    fi
    local queue=${P_QUEUE:-$STANDIN_DEFAULT_QUEUE}
    queue=${queue%%@*}
    if ! standin_queue_ok "$queue"; then
        [[ -n $tmp_script ]] && rm -f "$tmp_script"
        if [[ $mode == pbs ]]; then
            standin_err "qsub: Unknown queue"
            return 170 # PBSE_UNKQUE (15018) & 0xff
        fi
        standin_err "ERROR:  invalid class specified: $queue"
        return 1
    fi
    [[ -n $P_NAME ]] && name=$P_NAME

    # A job array (PBS Pro `-J lo-hi`): the array takes an id of its own, each subjob is
    # a job of the stand-in's with its own id, known outside as ARRAY[INDEX].server
    # (arrays/ARRAY/INDEX holds the inner id). qsub prints ARRAY[].server.
    local array_id="" k
    local -a elements=("")
    if [[ $mode == pbs && -n $P_ARRAY ]]; then
        if [[ ! $P_ARRAY =~ ^([0-9]+)-([0-9]+)$ ]] || ((BASH_REMATCH[1] >= BASH_REMATCH[2])); then
            [[ -n $tmp_script ]] && rm -f "$tmp_script"
            standin_err "qsub: illegal -J value"
            return 2
        fi
        local lo=${BASH_REMATCH[1]} hi=${BASH_REMATCH[2]}
        array_id=$(standin_alloc_id) || return 1
        mkdir -p "$STANDIN_STATE/arrays/$array_id"
        elements=()
        for ((k = lo; k <= hi; k++)); do elements+=("$k"); done
    fi
    for k in "${elements[@]}"; do
    local id jd
    id=$(standin_alloc_id) || return 1
    jd=$(standin_jobdir "$id")
    mkdir -p "$jd"
    local jobid="$id.$server"
    [[ -n $k ]] && jobid="$array_id[$k].$server"
    local workdir=${HOME:-/}
    [[ -n $P_WORKDIR ]] && workdir=$(standin_abspath "$P_WORKDIR" "$submit_dir")

    # Output files. Directory (trailing slash or existing dir): PBS Pro writes
    # <jobid>.OU / .ER there, Torque <name>.o<seq> / .e<seq>. No -o/-e: the real
    # default is <name>.o<seq> in the submission directory; the stand-in keeps
    # it in the state directory unless RDASK_STANDIN_REAL_DEFAULT_OUTPUT=1.
    local default_dir=$jd
    [[ ${RDASK_STANDIN_REAL_DEFAULT_OUTPUT:-0} == 1 ]] && default_dir=$submit_dir
    local out err out_attr err_attr
    _pbs_path() { # KIND(o|e) GIVEN -> prints path
        local kind=$1 given=$2 p
        if [[ -z $given ]]; then
            printf '%s/%s.%s%s' "$default_dir" "$name" "$kind" "$id"
            return
        fi
        p=$(standin_abspath "$given" "$submit_dir")
        if [[ $p == */ || -d $p ]]; then
            p=${p%/}
            if [[ $mode == pbs ]]; then
                [[ $kind == o ]] && printf '%s/%s.OU' "$p" "$jobid" || printf '%s/%s.ER' "$p" "$jobid"
            else
                printf '%s/%s.%s%s' "$p" "$name" "$kind" "$id"
            fi
            return
        fi
        printf '%s' "$p"
    }
    out=$(_pbs_path o "$P_OUT")
    err=$(_pbs_path e "$P_ERR")
    out_attr="$STANDIN_HOST:$(if [[ -n $P_OUT ]]; then standin_abspath "$P_OUT" "$submit_dir"; else printf '%s/%s.o%s' "$submit_dir" "$name" "$id"; fi)"
    err_attr="$STANDIN_HOST:$(if [[ -n $P_ERR ]]; then standin_abspath "$P_ERR" "$submit_dir"; else printf '%s/%s.e%s' "$submit_dir" "$name" "$id"; fi)"
    case $P_JOIN in
        oe) err="" ;;
        eo) out=$err; err="" ;;
    esac

    # Environment: PBS gives a login-like environment plus PBS_O_* (all of the
    # submitter's environment with -V), then -v variables, then PBS_* values.
    local ncpus
    ncpus=$(standin_pbs_ncpus)
    standin_base_env
    local -a envs=() vlist=()
    if [[ -n $P_ALLENV ]]; then
        standin_full_env
        envs=("${FULL_ENV[@]}")
    else
        envs=("${BASE_ENV[@]}")
    fi
    local v
    for v in HOME LANG LOGNAME PATH MAIL SHELL TZ; do
        [[ -n ${!v:-} ]] && vlist+=("PBS_O_$v=${!v}")
    done
    vlist+=("PBS_O_WORKDIR=$submit_dir" "PBS_O_HOST=$STANDIN_HOST" "PBS_O_SYSTEM=Linux" "PBS_O_QUEUE=$queue")
    local item
    for item in "${P_VLIST[@]}"; do
        local -a parts=()
        IFS=, read -r -a parts <<<"$item"
        for v in "${parts[@]}"; do
            [[ -z $v ]] && continue
            if [[ $v == *=* ]]; then vlist+=("$v"); else vlist+=("$v=${!v:-}"); fi
        done
    done
    envs+=("${vlist[@]}")
    [[ -n $k ]] && envs+=("PBS_ARRAY_INDEX=$k" "PBS_ARRAY_ID=$array_id[].$server")
    envs+=("PBS_JOBID=$jobid" "PBS_JOBNAME=$name" "PBS_QUEUE=$queue"
        "PBS_ENVIRONMENT=PBS_BATCH" "PBS_NODEFILE=$jd/nodefile" "PBS_JOBDIR=$workdir"
        "PBS_TASKNUM=1" "PBS_NODENUM=0" "PBS_MOMPORT=15003" "TMPDIR=$jd/tmp")
    mkdir -p "$jd/tmp"
    printf '%s\n' "$STANDIN_HOST" >"$jd/nodefile"
    if [[ $mode == pbs ]]; then
        envs+=("NCPUS=$ncpus" "OMP_NUM_THREADS=$ncpus")
    else
        envs+=("PBS_SERVER=$server" "PBS_O_INITDIR=$workdir" "PBS_NUM_NODES=1"
            "PBS_NUM_PPN=$ncpus" "PBS_NP=$ncpus" "PBS_VNODENUM=0"
            "MOAB_JOBID=$id" "MOAB_JOBNAME=$name" "MOAB_USER=$STANDIN_USER"
            "MOAB_CLASS=$queue" "MOAB_NODELIST=$STANDIN_HOST" "MOAB_PROCCOUNT=$ncpus")
        [[ -n $P_ACCOUNT ]] && envs+=("MOAB_ACCOUNT=$P_ACCOUNT")
    fi

    # How the script is started: -S shell, else its #! line, else /bin/sh.
    JOB_SCRIPT_SRC=$script_src
    J_ARGV=()
    if ((${#job_cmd[@]} > 0)); then
        J_ARGV=("${job_cmd[@]}")
    elif [[ -n $P_SHELL ]]; then
        J_ARGV=("${P_SHELL%%@*}" "$jd/script")
    elif [[ $(head -c2 -- "$script_src") == '#!' ]]; then
        J_ARGV=("$jd/script")
    else
        J_ARGV=(/bin/sh "$jd/script")
    fi
    J_ENV=("${envs[@]}")
    J_NAME=$name J_QUEUE=$queue J_WORKDIR=$workdir J_STDOUT=$out J_STDERR=$err
    J_SUBMIT_DIR=$submit_dir J_JOBID=$jobid J_SERVER=$server J_NCPUS=$ncpus
    J_OUT_ATTR=$out_attr J_ERR_ATTR=$err_attr J_JOIN=${P_JOIN:-n}
    J_ACCOUNT=$P_ACCOUNT J_SUBMIT_ARGS="${cli[*]}"
    J_RES=("${P_RES[@]}")
    J_VLIST=("${vlist[@]}")
    standin_create_job "$id" || return 1
    standin_launch "$id" || return 1
    [[ -n $k ]] && standin_write "$STANDIN_STATE/arrays/$array_id/$k" "$id"
    done
    [[ -n $tmp_script ]] && rm -f "$tmp_script"
    if [[ -n $array_id ]]; then
        printf '%s\n' "$array_id[].$server"
    elif [[ $mode == pbs ]]; then
        printf '%s\n' "$jobid"
    elif [[ -n $P_XML ]]; then
        printf '<Data><job JobID="%s"></job></Data>\n' "$id"
    else
        printf '\n%s\n' "$id"
    fi
    return 0
}

# The runner entry point: "bash lib.sh __run JOBDIR".
if [[ ${BASH_SOURCE[0]} == "$0" && ${1:-} == __run ]]; then
    STANDIN_HOST=$(hostname 2>/dev/null || echo localhost)
    STANDIN_HOST=${STANDIN_HOST%%.*}
    STANDIN_USER=$(id -un 2>/dev/null || echo root)
    standin_runner "$2"
fi
