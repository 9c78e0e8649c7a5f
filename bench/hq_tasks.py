"""HyperQueue's side of bench/tasks.sh: N tasks of `true` through its Python API's
LocalCluster with one worker of 2 cores, `Job.program(["true"])` per task, output dropped.
Prints one JSON object: tasks, seconds (from submit to every task done), tasks_per_s."""
import argparse
import json
import tempfile
import time

from hyperqueue import Job, LocalCluster
from hyperqueue.cluster import WorkerConfig
from importlib.metadata import version

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=10_000)
p.add_argument("--cores", type=int, default=2)
args = p.parse_args()

with tempfile.TemporaryDirectory(prefix="hq-bench-") as d:
    with LocalCluster(server_dir=d) as cluster:
        cluster.start_worker(WorkerConfig(cores=args.cores))
        client = cluster.client()
        # Let the worker register, as ours are connected before the clock starts.
        warm = Job()
        warm.program(["true"], stdout=None, stderr=None)
        client.wait_for_jobs([client.submit(warm)])
        job = Job()
        for _ in range(args.n):
            job.program(["true"], stdout=None, stderr=None)
        t0 = time.perf_counter()
        submitted = client.submit(job)
        ok = client.wait_for_jobs([submitted])
        seconds = time.perf_counter() - t0
print(json.dumps({"tasks": args.n, "seconds": seconds, "tasks_per_s": args.n / seconds,
                  "ok": bool(ok), "hyperqueue": version("hyperqueue")}))
