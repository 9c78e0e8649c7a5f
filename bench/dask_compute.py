#!/usr/bin/env python3
"""dask.array's side of bench/compute.sh (issue 17's compute workloads); Python is only the
comparison here, never part of the product. With the venv of bench/setup.sh:

    bench/.venv/bin/python bench/dask_compute.py --file /tmp/rdask-bench/x.h5 CASE...

On a LocalCluster(n_workers=2, threads_per_worker=1, processes=True), started once and
warmed up with one run of each case, prints one JSON object: the compute time (s) of one
run of each CASE, in order:

  abs_max       abs(x - 0.5).max()
  exp_mean      exp(x).mean()
  sq_sum        (x * x).sum()
  store_random  random((16384, 16384), chunks=(1024, 1024)) stored to HDF5 (to_hdf5; fails on
                a distributed cluster: a writable h5py file does not serialise)

x is /x of FILE (float64, chunks 1024x1024, made by `rdask-jobqueue bench array`). Only the
compute is timed (the cluster is warm); bench/compute.sh times our whole command.
"""

import argparse
import json
import logging
import os
import time
import warnings


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--file", required=True)
    p.add_argument("--out", default="/tmp/rdask-bench/dask-random.h5")
    p.add_argument("cases", nargs="+")
    a = p.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("distributed").setLevel(logging.ERROR)
    import dask.array as da
    import h5py
    import numpy as np
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster):
        f = h5py.File(a.file, "r")
        x = da.from_array(f["/x"], chunks=(1024, 1024))

        def store_random():
            if os.path.exists(a.out):
                os.remove(a.out)
            r = da.random.random((16384, 16384), chunks=(1024, 1024))
            r.to_hdf5(a.out, "/r")

        cases = {
            "abs_max": lambda: abs(x - 0.5).max().compute(),
            "exp_mean": lambda: np.exp(x).mean().compute(),
            "sq_sum": lambda: (x * x).sum().compute(),
            "store_random": store_random,
        }
        out = {}
        for name in a.cases:
            cases[name]()  # warm-up
            t = time.perf_counter()
            cases[name]()
            out[name] = time.perf_counter() - t
        if os.path.exists(a.out):
            os.remove(a.out)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
