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

With --suite filters (bench/filters.sh runs it), the strided and compressed reads instead,
over copies of /x made by --make-filtered DIR (gzip level 1; shuffle + gzip 4; LZF; same
chunks):

  strided     x[::2, ::2].sum()                   (the plain file)
  gzip1_sum   x.sum(), gzip1_mean0 x.mean(axis=0) (DIR/x-gzip1.h5)
  sg4_sum     x.sum()                             (DIR/x-shuffle-gzip4.h5)
  lzf_sum     x.sum()                             (DIR/x-lzf.h5)

and --floors DIR times the floors: one process reading every chunk of the plain file with
h5py and summing it; two processes doing the same over halves of each compressed file
(HDF5's own decompression, one process per core).
"""

FILTERED = {"gzip1": dict(compression="gzip", compression_opts=1),
            "shuffle-gzip4": dict(shuffle=True, compression="gzip", compression_opts=4),
            "lzf": dict(compression="lzf")}


def make_filtered(src, d):
    import os
    import h5py
    with h5py.File(src, "r") as f:
        x = f["/x"]
        for name, opts in FILTERED.items():
            path = f"{d}/x-{name}.h5"
            if os.path.exists(path):
                continue
            with h5py.File(path + ".tmp", "w") as g:
                y = g.create_dataset("x", shape=x.shape, dtype=x.dtype, chunks=x.chunks, **opts)
                step = x.chunks[0]
                for i in range(0, x.shape[0], step):
                    y[i:i + step] = x[i:i + step]
            os.rename(path + ".tmp", path)
            print(f"made {path}", file=sys.stderr, flush=True)


def read_sum(path, part, parts):
    import h5py
    import numpy as np
    total = 0.0
    with h5py.File(path, "r", rdcc_nbytes=0) as f:
        x = f["/x"]
        c0, c1 = x.chunks
        blocks = [(i, j) for i in range(0, x.shape[0], c0) for j in range(0, x.shape[1], c1)]
        for i, j in blocks[part::parts]:
            total += float(np.sum(x[i:i + c0, j:j + c1]))
    return total


def floors(src, d, repeat):
    from concurrent.futures import ProcessPoolExecutor
    out = {}
    def timed(fn):
        times = []
        for _ in range(repeat):
            t = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t)
        return statistics.median(times)
    out["floor_plain"] = timed(lambda: read_sum(src, 0, 1))
    with ProcessPoolExecutor(2) as pool:
        for name in FILTERED:
            path = f"{d}/x-{name}.h5"
            out["floor_" + name] = timed(
                lambda: list(pool.map(read_sum, [path, path], [0, 1], [2, 2])))
    return out

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
    p.add_argument("--suite", choices=["basic", "filters"], default="basic")
    p.add_argument("--filtered-dir", help="where the compressed copies of --file are")
    p.add_argument("--make-filtered", metavar="DIR", help="make the compressed copies and exit")
    p.add_argument("--floors", metavar="DIR", help="time the floors and exit")
    a = p.parse_args()
    if a.make_filtered:
        return make_filtered(a.file, a.make_filtered)
    if a.floors:
        out = floors(a.file, a.floors, a.repeat)
        print(json.dumps(out) if a.json else out)
        return
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
        if a.suite == "filters":
            fd = a.filtered_dir
            g1 = da.from_array(h5py.File(f"{fd}/x-gzip1.h5", "r")["/x"], chunks=(1024, 1024))
            sg4 = da.from_array(h5py.File(f"{fd}/x-shuffle-gzip4.h5", "r")["/x"],
                                chunks=(1024, 1024))
            lzf = da.from_array(h5py.File(f"{fd}/x-lzf.h5", "r")["/x"], chunks=(1024, 1024))
            cases = {
                "strided": lambda: x[::2, ::2].sum().compute(),
                "gzip1_sum": lambda: g1.sum().compute(),
                "gzip1_mean0": lambda: g1.mean(axis=0).compute(),
                "sg4_sum": lambda: sg4.sum().compute(),
                "lzf_sum": lambda: lzf.sum().compute(),
            }
        else:
            cases = {}
        cases = cases or {
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
