"""The Python package's measurements (issue 14), run by both sides with the same code:
`--side rdask` (import rdask, in the rdask wheel's virtualenv) or `--side dask` (dask
distributed, in bench/.venv). Both on a LocalCluster of 2 worker processes x 1 thread.
Prints one JSON object.

  map     client.map(inc, range(N)) + gather                      tasks/s
  tree    a binary tree of 1,023 submit(add, a, b) futures         tasks/s
  arrays  100 tasks returning 8 MB NumPy arrays, summed on a worker   MB/s
"""

import argparse
import json
import os
import sys
import time

import numpy as np


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def block(i):
    # 8 MB of float64, made on the worker.
    return np.full(1 << 20, float(i))


def total(arrays):
    out = np.zeros_like(arrays[0])
    for a in arrays:
        out += a
    return out


def median(xs):
    xs = sorted(xs)
    return xs[len(xs) // 2]


def measure(client, n_map, rounds):
    out = {"map": [], "tree": [], "arrays": []}
    client.gather(client.map(inc, range(200), pure=False))  # warm interpreters/workers
    for _ in range(rounds):
        t = time.perf_counter()
        futures = client.map(inc, range(n_map), pure=False)
        got = client.gather(futures)
        out["map"].append(n_map / (time.perf_counter() - t))
        assert got[-1] == n_map
        del futures, got

        t = time.perf_counter()
        level = [client.submit(add, i, 1, pure=False) for i in range(512)]
        while len(level) > 1:
            level = [client.submit(add, level[i], level[i + 1], pure=False)
                     for i in range(0, len(level), 2)]
        value = level[0].result()
        out["tree"].append(1023 / (time.perf_counter() - t))
        assert value == sum(range(512)) + 512
        del level

        t = time.perf_counter()
        parts = client.map(block, range(100), pure=False)
        s = client.submit(total, parts, pure=False).result()
        seconds = time.perf_counter() - t
        out["arrays"].append(100 * 8 * 2**20 / seconds / 1e6)
        assert s[0] == sum(range(100))
        del parts, s
    return {k: {"median": median(v), "all": v} for k, v in out.items()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--side", choices=["rdask", "dask"], required=True)
    p.add_argument("--n", type=int, default=10_000)
    p.add_argument("--rounds", type=int, default=3)
    a = p.parse_args()
    if a.side == "rdask":
        import rdask

        # Functions of this script go by value, as for any script's own functions.
        import cloudpickle
        cloudpickle.register_pickle_by_value(sys.modules[__name__])
        with rdask.LocalCluster(n_workers=2, threads_per_worker=1) as cluster:
            with rdask.Client(cluster) as client:
                result = measure(client, a.n, a.rounds)
    else:
        import logging
        import warnings

        warnings.filterwarnings("ignore")
        logging.disable(logging.WARNING)
        from distributed import Client, LocalCluster

        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                          dashboard_address=None) as cluster:
            with Client(cluster) as client:
                result = measure(client, a.n, a.rounds)
    result["side"] = a.side
    result["n"] = a.n
    print(json.dumps(result))


if __name__ == "__main__":
    main()
