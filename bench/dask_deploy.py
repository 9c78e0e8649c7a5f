#!/usr/bin/env python3
"""dask-jobqueue on the local SLURM: how long SLURMCluster.scale(N) takes until N workers are
connected, then scale(0) until none is left, then close(). The rdask side and the floor are
in bench/deploy.sh, which runs this script in the same run.

Python is used here only to run dask-jobqueue for comparison; it is never part of the
product. Run with the virtualenv of bench/setup.sh:

    bench/.venv/bin/python bench/dask_deploy.py --n 10 --repeat 3 --json

The workers' job shape is the rdask side's: 1 core, 500 MB, partition `debug`, 10 minutes.
Each repetition starts a fresh SLURMCluster (its scheduler lives in this process, as in
every dask-jobqueue program) and times:

  scale_s   cluster.scale(N) + client.wait_for_workers(N)
  scale0_s  cluster.scale(0) until the scheduler has no worker and squeue shows none of the
            cluster's jobs alive
  close_s   cluster.close() (nothing left to cancel by then)
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import logging
import warnings


def alive_jobs(name):
    out = subprocess.run(
        ["squeue", "--noheader", "--name", name, "--format=%i %T"],
        capture_output=True, text=True, check=True,
    ).stdout
    return [l for l in out.splitlines() if l.strip()]


def once(n, logdir):
    from dask_jobqueue import SLURMCluster
    from distributed import Client

    name = "dask-bench"
    cluster = SLURMCluster(
        queue="debug", cores=1, processes=1, memory="500MB", walltime="00:10:00",
        job_name=name, log_directory=logdir, scheduler_options={"dashboard_address": None},
    )
    client = Client(cluster)
    t0 = time.perf_counter()
    cluster.scale(n)
    client.wait_for_workers(n)
    scale_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    cluster.scale(0)
    while client.scheduler_info()["workers"] or alive_jobs(name):
        time.sleep(0.02)
    scale0_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    client.close()
    cluster.close()
    close_s = time.perf_counter() - t0
    return {"scale_s": scale_s, "scale0_s": scale0_s, "close_s": close_s}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    from importlib.metadata import version

    runs = []
    with tempfile.TemporaryDirectory(prefix="dask-bench-", dir="/tmp") as logdir:
        for i in range(args.repeat):
            r = once(args.n, logdir)
            print(f"dask-jobqueue run {i + 1}: {r}", file=sys.stderr, flush=True)
            runs.append(r)
    med = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    result = {"n": args.n, "runs": runs, "median": med,
              "dask_jobqueue_version": version("dask-jobqueue"),
              "distributed_version": version("distributed")}
    print(json.dumps(result) if args.json else json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
