#!/usr/bin/env python3
"""NumPy as the independent reference for rdask's arrays (tests only, never the product).

  reference.py make DIR            write the input files with h5py
  reference.py check DIR RESULTS   evaluate every expression in RESULTS (JSON written by the
                                   Rust test: {expr: {"shape", "dtype", "data"}}) with NumPy on
                                   the same files and compare shape, dtype and values
  reference.py stored FILE:DSET EXPR DIR   compare a dataset we wrote with NumPy's value
"""
import json
import re
import sys

import h5py
import numpy as np

SHAPE = (37, 23)  # non-square; the file chunks (10, 7) leave ragged edges


def make(d):
    rng = np.random.default_rng(42)
    with h5py.File(f"{d}/inputs.h5", "w") as f:
        base = rng.normal(size=SHAPE) * 10
        f.create_dataset("f64", data=base, chunks=(10, 7))
        f.create_dataset("f32", data=base.astype("f4"), chunks=(10, 7))
        ints = rng.integers(-50, 50, size=SHAPE)
        f.create_dataset("i64", data=ints.astype("i8"), chunks=(10, 7))
        f.create_dataset("i32", data=ints.astype("i4"), chunks=(10, 7))
        # h5py stores bools as an HDF5 enum of int8 (FALSE = 0, TRUE = 1).
        f.create_dataset("b", data=ints % 3 == 0, chunks=(10, 7))
        f.create_dataset("b32", data=rng.integers(-5, 5, size=(23,)).astype("i4"))
        f.create_dataset("c3", data=rng.normal(size=(6, 5, 4)), chunks=(4, 2, 3))
        f.create_dataset("v", data=rng.normal(size=(50,)), chunks=(7,))
        f.create_dataset("u64", data=np.arange(4, dtype="u8"))
        f.create_dataset("s", data=np.array([b"text"]))


def namespace(d):
    with h5py.File(f"{d}/inputs.h5", "r") as f:
        ns = {k: f[k][()] for k in ("f64", "f32", "i64", "i32", "b32", "c3", "v", "b")}
    drop = lambda fn: (lambda *a, chunks=None, seed=None, **k: fn(*a, **k))
    for name in ("sum", "mean", "min", "max", "var", "std", "sqrt", "exp", "log", "abs",
                 "sin", "cos", "dot", "transpose", "where", "clip", "minimum", "maximum",
                 "isnan", "isfinite", "sign", "floor", "ceil", "round", "tanh", "arcsin",
                 "arccos", "arctan", "log10", "log1p", "expm1", "argmin", "argmax",
                 "count_nonzero", "nansum", "nanmean", "nanmin", "nanmax", "nanstd",
                 "nanvar", "prod", "any", "all", "cumsum", "cumprod", "squeeze",
                 "expand_dims", "concatenate", "stack", "reshape", "median",
                 "percentile"):
        ns[name] = getattr(np, name)
    ns.update(np=np, ones=drop(np.ones), zeros=drop(np.zeros), full=drop(np.full),
              arange=drop(np.arange))
    return ns


def numpy_of(expr):
    # rechunk changes nothing numerically: drop it for NumPy.
    return re.sub(r"\.rechunk\(\([0-9, ]*\)\)", "", expr)


def same(ours, want, what):
    want = np.asarray(want)
    if list(ours["shape"]) != list(want.shape):
        return f"{what}: shape {ours['shape']} != numpy {list(want.shape)}"
    if ours["dtype"] != want.dtype.name:
        return f"{what}: dtype {ours['dtype']} != numpy {want.dtype.name}"
    got = np.asarray(ours["data"], dtype=want.dtype).reshape(want.shape)
    if want.dtype.kind in "iub":
        ok = np.array_equal(got, want)
    else:
        # Sums in another order differ by rounding relative to the largest magnitude.
        tol = 1e-5 if want.dtype == np.float32 else 1e-10
        finite = np.abs(want[np.isfinite(want)]) if want.size else want
        scale = max(1.0, float(np.max(finite))) if finite.size else 1.0
        ok = np.allclose(got, want, rtol=tol, atol=tol * scale, equal_nan=True)
    return None if ok else f"{what}: values differ, max |diff| {np.max(np.abs(got - want))}"


def check(d, results_file):
    ns = namespace(d)
    results = json.load(open(results_file))
    failures = []
    for expr, ours in results.items():
        want = eval(numpy_of(expr), ns)
        err = same(ours, want, expr)
        if err:
            failures.append(err)
    for f in failures:
        print(f)
    print(f"{len(results) - len(failures)} of {len(results)} expressions match numpy")
    sys.exit(1 if failures else 0)


def stored(target, expr, d):
    path, dset = target.rsplit(":", 1)
    with h5py.File(path, "r") as f:
        data = f[dset][()]
    want = eval(numpy_of(expr), namespace(d))
    err = same({"shape": list(data.shape), "dtype": data.dtype.name, "data": data.tolist()},
               want, f"{target} = {expr}")
    if err:
        print(err)
        sys.exit(1)
    print(f"{target} matches numpy")


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "make":
        make(sys.argv[2])
    elif cmd == "check":
        check(sys.argv[2], sys.argv[3])
    elif cmd == "stored":
        stored(sys.argv[2], sys.argv[3], sys.argv[4])
