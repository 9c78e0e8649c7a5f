#!/usr/bin/env python3
"""dask.array + h5py on this machine, beside rdask's `bench array` (bench/run.sh runs both).

Python is only the comparison here, never part of the product. With the venv of
bench/setup.sh:

    bench/.venv/bin/python bench/dask_array.py --file /tmp/rdask-bench/x.h5 --json

On a LocalCluster(n_workers=2, threads_per_worker=1, processes=True) and the dataset /x of
FILE (float64, chunks 1024x1024, made by `rdask-jobqueue bench array`), it times, each the
median of --repeat runs after one warm-up run:

  mean0   x.mean(axis=0).compute()
  sum     x.sum().compute()
  centred ((x + x.T) - x.mean(axis=0)).sum(axis=1).compute()
  dot     y.dot(y.T).compute() with y = x[:DOT, :DOT]

and reports each worker's peak RSS (ru_maxrss) at the end. Dask's nanny limits BLAS to one
thread per worker, as our workers use one thread each.
"""

import argparse
import json
import logging
import resource
import statistics
import sys
import time
import warnings


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--file", required=True)
    p.add_argument("--dot", type=int, default=8192)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    import dask
    import dask.array as da
    import h5py
    from dask.distributed import Client, LocalCluster

    log = sys.stderr if a.json else sys.stdout
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        f = h5py.File(a.file, "r")
        x = da.from_array(f["/x"], chunks=(1024, 1024))
        y = x[: a.dot, : a.dot]
        cases = {
            "mean0": lambda: x.mean(axis=0).compute(),
            "sum": lambda: x.sum().compute(),
            "centred": lambda: ((x + x.T) - x.mean(axis=0)).sum(axis=1).compute(),
            "dot": lambda: y.dot(y.T).compute(),
        }
        out = {"dask_version": dask.__version__, "shape": list(x.shape),
               "repeat": a.repeat, "dot": a.dot}
        for name, run in cases.items():
            run()
            times = []
            for _ in range(a.repeat):
                t = time.perf_counter()
                run()
                times.append(time.perf_counter() - t)
            out[name] = statistics.median(times)
            print(f"dask {name}: {out[name]:.3f} s (runs {[round(t, 3) for t in times]})",
                  file=log, flush=True)
        peaks = client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
        out["worker_peak_rss_mb"] = [v / 1024 for v in peaks.values()]
    if a.json:
        print(json.dumps(out))


if __name__ == "__main__":
    main()
