#!/bin/bash
# The MPI-style runner on Grid Engine: a parallel environment gives the slots, `mpirun`
# starts the ranks. Rank 0 runs the scheduler, rank 1 the driver, ranks 2.. workers.
# Submit with: qsub launchers/sge.sh
#
# Change: the parallel environment name and slots (-pe; `qconf -spl` lists them), memory
# (h_vmem is per slot on most sites), walltime (h_rt), queue, and EXPR/INPUT/OUTPUT.
#$ -N rdask-mpi
#$ -pe mpi 8
#$ -l h_rt=01:00:00
#$ -l h_vmem=4G
#$ -cwd
#$ -j y
##$ -q all.q
set -euo pipefail

RDASK=${RDASK:-rdask-jobqueue}
EXPR=${EXPR:-'x.mean(axis=0)'}
INPUT=${INPUT:-x=$HOME/data.h5:/x}
OUTPUT=${OUTPUT:-$HOME/result.h5:/mean0}
NTHREADS=${NTHREADS:-1}
MEM=${MEM:-3GiB}

mpirun -np "$NSLOTS" "$RDASK" mpi --scheduler-file "$PWD/rdask-scheduler-$JOB_ID.json" \
    --nthreads "$NTHREADS" --memory-limit "$MEM" \
    array "$EXPR" --input "$INPUT" --output "$OUTPUT" --overwrite --quiet
