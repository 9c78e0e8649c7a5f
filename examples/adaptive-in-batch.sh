#!/usr/bin/env bash
# An adaptive cluster started from inside a SLURM batch job.
#
# This job is small (one core): it runs the cluster's daemon and the computations. The
# workers are more batch jobs that the daemon submits from here as the queued work needs
# them (between the adapt bounds) and cancels when it is done; `down` at the end (or on
# failure, or when this job is cancelled) cancels every one of them.
#
#   sbatch examples/adaptive-in-batch.sh data.h5:/x results.h5:/centred
#
# What to change for your site: the #SBATCH lines of this job, and the worker jobs' shape
# below (or put it in ~/.config/rdask/jobqueue.toml and drop the flags). docs/clusters.md
# explains every step.
#
#SBATCH -J rdask-driver
#SBATCH -n 1
#SBATCH -c 1
#SBATCH --mem=2G
#SBATCH -t 02:00:00
set -euo pipefail

RDASK=${RDASK:-rdask-jobqueue}              # the binary (on PATH, or a full path)
NAME=${NAME:-job-${SLURM_JOB_ID:-$$}}       # one cluster per batch job
INPUT=${1:?usage: sbatch adaptive-in-batch.sh INPUT.h5:/dataset OUTPUT.h5:/dataset}
OUTPUT=${2:?usage: sbatch adaptive-in-batch.sh INPUT.h5:/dataset OUTPUT.h5:/dataset}

# The worker jobs: each CORES cores and MEMORY, split into PROCESSES worker processes, at
# most WALLTIME (workers retire a little before it and are replaced while work remains).
"$RDASK" up --name "$NAME" --system slurm \
    --queue "${QUEUE:-debug}" \
    --cores "${CORES:-4}" --processes "${PROCESSES:-2}" --memory "${MEMORY:-16GB}" \
    --walltime "${WALLTIME:-01:00:00}" \
    --adapt "${ADAPT:-2:20}"
# Whatever happens next, no worker job outlives this one.
trap '"$RDASK" down --name "$NAME"' EXIT
trap 'exit 143' TERM INT

# The computations: each submits its graph; the cluster grows while it runs and shrinks
# back to the minimum when it is idle.
"$RDASK" array '(x + x.T) - x.mean(axis=0)' --input "x=$INPUT" --output "$OUTPUT" \
    --overwrite --cluster "$NAME"
"$RDASK" array 'x.std()' --input "x=$INPUT" --cluster "$NAME"
"$RDASK" status --name "$NAME"
