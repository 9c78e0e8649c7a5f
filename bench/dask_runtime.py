#!/usr/bin/env python3
"""Measures Dask distributed on this machine, to compare with rdask-jobqueue's runtime.

Python is used here only to run Dask side by side with the Rust runtime; it is never part
of the product. Run it with the virtualenv that bench/setup.sh makes:

    bash bench/setup.sh
    bench/.venv/bin/python bench/dask_runtime.py --n 2000            # quick check
    bench/.venv/bin/python bench/dask_runtime.py --n 100000 --json   # the real measurement

On a LocalCluster(n_workers=2, threads_per_worker=1, processes=True) it measures:

  startup_s      time from LocalCluster(...) construction until both workers are connected
                 to the scheduler (as the client sees them);
  worker_rss_mb  RSS of each worker process after start and 2 s idle (pids from
                 client.run(os.getpid)); the RSS of this process, which in a LocalCluster
                 holds the scheduler, the client and both nannies, is reported beside it;
  noop           N independent no-op tasks, client.gather(client.map(noop, range(N),
                 pure=False)), timed from submit until all results are gathered, after a
                 warm-up;
  tree           a binary tree reduction over N leaves built with dask.delayed (leaves return
                 a small int, inner nodes add their two children; 2N-1 tasks), timed around
                 client.compute(...).result(); tasks/s counts all tasks. Building the delayed
                 graph is timed separately (build_s) and not included.

Each timed phase also reports bench_cpu_s (CPU seconds of this process and the workers) and other_cpu_s (CPU seconds every other process on the host used meanwhile, e.g. a
compile running beside the benchmark; the machine has 2 cores, so at most 2 x seconds), and
the 1-minute load average at its end. Progress lines go to stdout, or to stderr with --json,
where stdout holds only the one JSON object. Dask's own warnings and logs are silenced unless
--verbose.
"""

import argparse
import json
import logging
import os
import sys
import time
import warnings


def noop(x):
    return None


def leaf(i):
    return i % 7


def add(a, b):
    return a + b


def log(args, msg):
    """Progress lines: on stdout, or on stderr with --json (stdout then holds only the JSON)."""
    print(msg, file=sys.stderr if args.json else sys.stdout, flush=True)


class Interference:
    """CPU seconds that processes other than this benchmark's (this process and the workers)
    used during a phase, from the host's CPU counters. On this 2-core machine a
    phase of T seconds has at most 2T CPU seconds; a compile running beside the benchmark shows
    up here."""

    def __init__(self, procs):
        import psutil

        self.psutil = psutil
        self.procs = procs
        self.start()

    def _busy(self):
        t = self.psutil.cpu_times()
        total = sum(t) - getattr(t, "guest", 0.0) - getattr(t, "guest_nice", 0.0)
        return total - t.idle - getattr(t, "iowait", 0.0)

    def _ours(self):
        s = 0.0
        for p in self.procs:
            try:
                c = p.cpu_times()
                s += c.user + c.system
            except self.psutil.Error:
                pass
        return s

    def start(self):
        self.busy0, self.ours0 = self._busy(), self._ours()

    def stop(self):
        busy, ours = self._busy() - self.busy0, self._ours() - self.ours0
        return {
            "bench_cpu_s": round(ours, 2),
            "other_cpu_s": round(max(0.0, busy - ours), 2),
            "loadavg_1m_end": round(os.getloadavg()[0], 2),
        }


def quiet():
    """Silence Dask's warnings and log lines (this process and, via the environment, the
    spawned worker processes)."""
    os.environ["PYTHONWARNINGS"] = "ignore"
    warnings.filterwarnings("ignore")
    for name in ("distributed", "dask", "tornado", "asyncio", "bokeh"):
        logging.getLogger(name).setLevel(logging.CRITICAL)


def build_tree(n):
    """dask.delayed binary tree reduction over n leaves; returns (root, task_count, expected)."""
    from dask import delayed

    d_leaf = delayed(leaf, pure=False)
    d_add = delayed(add, pure=False)
    level = [d_leaf(i) for i in range(n)]
    tasks = n
    while len(level) > 1:
        nxt = [d_add(level[i], level[i + 1]) for i in range(0, len(level) - 1, 2)]
        tasks += len(nxt)
        if len(level) % 2:
            nxt.append(level[-1])
        level = nxt
    expected = sum(i % 7 for i in range(n))
    return level[0], tasks, expected


def scheduler_tasks(dask_scheduler=None):
    return len(dask_scheduler.tasks)


def wait_released(client, timeout=120.0):
    """Waits until the scheduler has forgotten every task (released futures go asynchronously),
    so that one phase's clean-up does not run inside the next phase's timing."""
    deadline = time.monotonic() + timeout
    while client.run_on_scheduler(scheduler_tasks) and time.monotonic() < deadline:
        time.sleep(0.1)


def mb(nbytes):
    return round(nbytes / (1024 * 1024), 1)


def run(args):
    import dask
    import distributed
    import psutil
    from distributed import Client, LocalCluster

    result = {
        "dask_version": dask.__version__,
        "distributed_version": distributed.__version__,
        "python_version": sys.version.split()[0],
        "cluster": "LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)",
        "loadavg_before": [round(x, 2) for x in os.getloadavg()],
    }

    t0 = time.perf_counter()
    cluster = LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.DEBUG if args.verbose else logging.CRITICAL,
    )
    try:
        client = Client(cluster)
        try:
            client.wait_for_workers(2)
            result["startup_s"] = round(time.perf_counter() - t0, 3)
            log(args, f"startup: {result['startup_s']} s until 2 workers connected")

            # Idle memory: RSS of each worker process after start and 2 s idle.
            time.sleep(2.0)
            pids = client.run(os.getpid)
            workers = [psutil.Process(pid) for _, pid in sorted(pids.items())]
            me = psutil.Process()
            if any(p.pid == me.pid for p in workers):
                raise RuntimeError("a worker runs in this process: processes=True was ignored")
            result["worker_rss_mb"] = [mb(p.memory_info().rss) for p in workers]
            # In a LocalCluster the scheduler, the client and both nannies are objects in this
            # process (each nanny spawns its worker as a child process).
            result["worker_parent_is_this_process"] = all(p.ppid() == me.pid for p in workers)
            result["scheduler_client_nannies_rss_mb"] = mb(me.memory_info().rss)
            log(args, f"idle RSS: workers {result['worker_rss_mb']} MB, this process "
                      f"(scheduler + client + nannies) {result['scheduler_client_nannies_rss_mb']} MB")

            cpu = Interference([me] + workers)

            # (a) independent no-op tasks, after a warm-up.
            warm = max(100, min(2000, args.n // 10))
            client.gather(client.map(noop, range(warm), pure=False))
            wait_released(client)
            cpu.start()
            t = time.perf_counter()
            futures = client.map(noop, range(args.n), pure=False)
            client.gather(futures)
            secs = time.perf_counter() - t
            del futures
            wait_released(client)
            result["noop"] = {
                "tasks": args.n,
                "warmup_tasks": warm,
                "seconds": round(secs, 3),
                "tasks_per_s": round(args.n / secs, 1),
                **cpu.stop(),
            }
            log(args, f"noop: {args.n} tasks in {secs:.3f} s = {args.n / secs:.1f} tasks/s; "
                      f"other processes used {result['noop']['other_cpu_s']} CPU s meanwhile")

            # (b) binary tree reduction with dask.delayed.
            t = time.perf_counter()
            root, tasks, expected = build_tree(args.n)
            build = time.perf_counter() - t
            cpu.start()
            t = time.perf_counter()
            got = client.compute(root).result()
            secs = time.perf_counter() - t
            del root
            if got != expected:
                raise RuntimeError(f"tree reduction returned {got}, expected {expected}")
            result["tree"] = {
                "leaves": args.n,
                "tasks": tasks,
                "build_s": round(build, 3),
                "seconds": round(secs, 3),
                "tasks_per_s": round(tasks / secs, 1),
                **cpu.stop(),
            }
            log(args, f"tree: {args.n} leaves, {tasks} tasks in {secs:.3f} s = "
                      f"{tasks / secs:.1f} tasks/s (graph built in {build:.3f} s, not counted); "
                      f"other processes used {result['tree']['other_cpu_s']} CPU s meanwhile")

            result["worker_rss_after_mb"] = [
                mb(p.memory_info().rss) for p in workers if p.is_running()
            ]
        finally:
            client.close()
    finally:
        cluster.close()

    result["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
    return result


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=100000,
                   help="no-op tasks, and leaves of the tree reduction (default 100000)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--verbose", action="store_true", help="keep Dask's warnings and logs")
    args = p.parse_args()
    if args.n < 2:
        p.error("--n must be at least 2")
    if not args.verbose:
        quiet()
    result = run(args)
    log(args, f"load average before {result['loadavg_before']}, after {result['loadavg_after']}")
    if args.json:
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
