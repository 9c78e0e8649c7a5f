#!/usr/bin/env python3
"""h5py writes every filter combination and dtype we read; NumPy (through h5py, i.e. the
HDF5 library's own decoding) is the reference (tests only, never the product).

  filters.py make DIR            write DIR/filters.h5; print {dataset: ndim} as JSON
  filters.py check DIR RESULTS   evaluate each expression of RESULTS with NumPy over the
                                 datasets and compare (shape, dtype, values)
"""
import json
import sys

import h5py
import numpy as np

sys.path.insert(0, __file__.rsplit("/", 1)[0])
from reference import numpy_of, same  # noqa: E402

SHAPE = (37, 23)  # the chunks (10, 7) leave ragged edges on both axes
CHUNKS = (10, 7)


def shuffled(a):
    """HDF5's shuffle of a C-ordered array's bytes: byte planes one after the other."""
    b = np.ascontiguousarray(a).view(np.uint8).reshape(-1, a.dtype.itemsize)
    return b.T.copy().tobytes()


def make(d):
    rng = np.random.default_rng(7)
    base = rng.normal(size=SHAPE) * 100
    ints = rng.integers(-100, 100, size=SHAPE)
    made = {}
    with h5py.File(f"{d}/filters.h5", "w") as f:
        def ds(name, data, **kw):
            kw.setdefault("chunks", CHUNKS if data.ndim == 2 else None)
            f.create_dataset(name, data=data, **kw)
            made[name] = data.ndim

        # Every filter combination on float64.
        ds("plain", base)
        ds("contiguous", base, chunks=None)
        for level in (1, 4, 9):
            ds(f"gzip{level}", base, compression="gzip", compression_opts=level)
        ds("shuffle_gzip4", base, shuffle=True, compression="gzip", compression_opts=4)
        ds("lzf", base, compression="lzf")
        ds("shuffle_lzf", base, shuffle=True, compression="lzf")
        ds("fletcher32", base, fletcher32=True)
        ds("shuffle_gzip_fletcher32", base, shuffle=True, compression="gzip", fletcher32=True)
        ds("shuffle_only", base, shuffle=True)
        # Decoded by the library only.
        ds("szip", base, compression="szip")
        ds("scaleoffset", base, scaleoffset=3)
        # Every dtype, shuffled and compressed; big-endian ones too.
        for t in ("f4", "f2", "i1", "i2", "i4", "i8", "u1", "u2", "u4", ">f8", ">f4", ">i4",
                  ">u2"):
            src = base if t[-2] == "f" else ints
            if t.lstrip("<>").startswith("u"):
                src = np.abs(ints)
            name = "t_" + t.replace(">", "be_")
            ds(name, src.astype(t), shuffle=True, compression="gzip", compression_opts=1)
        ds("t_bool", ints % 3 == 0, shuffle=True, compression="gzip")
        ds("t_bool_lzf", ints % 2 == 0, compression="lzf")
        # 1-d and 3-d with ragged chunks; tiny chunks (read in boxes through the library).
        ds("v", rng.normal(size=(101,)), chunks=(8,), compression="gzip")
        ds("c3", rng.normal(size=(6, 5, 9)), chunks=(4, 2, 3), shuffle=True,
           compression="lzf")
        ds("tiny", base, chunks=(1, 1))
        ds("tiny_gzip", base[:12, :9], chunks=(1, 2), compression="gzip")
        # Unfiltered chunks of 256 KiB and more are read directly and cut here.
        big = rng.normal(size=(300, 410))
        ds("big_plain", big, chunks=(128, 256))
        ds("big_be", big.astype(">f8"), chunks=(128, 256))
        ds("big_be_i4", (big * 1000).astype(">i4"), chunks=(256, 300))
        # Chunks never written read as the fill value.
        f.create_dataset("sparse", shape=SHAPE, dtype="f8", chunks=CHUNKS,
                         compression="gzip", fillvalue=7.5)
        f["sparse"][12:25, 3:10] = base[12:25, 3:10]
        made["sparse"] = 2
        # Chunks whose filter mask skips filters: deflate skipped (bit 1: stored shuffled
        # only), everything skipped (stored as is), and a normal one.
        m = f.create_dataset("masked", shape=(20, 14), dtype="f8", chunks=CHUNKS,
                             shuffle=True, compression="gzip")
        m[...] = base[:20, :14]
        m.id.write_direct_chunk((0, 7), shuffled(base[:10, 7:14] + 1000), filter_mask=0b10)
        m.id.write_direct_chunk((10, 0), np.ascontiguousarray(base[10:20, :7] - 1000).tobytes(),
                                filter_mask=0b11)
        made["masked"] = 2
    return made


def namespace(d):
    widen = {"float16": "float32", "int8": "int32", "int16": "int32", "uint8": "int32",
             "uint16": "int32", "uint32": "int64"}
    ns = {"np": np}
    with h5py.File(f"{d}/filters.h5", "r") as f:
        for k in f:
            a = f[k][()]
            a = a.astype(a.dtype.newbyteorder("="))
            ns[k] = a.astype(widen.get(a.dtype.name, a.dtype))
    return ns


def check(d, results_file):
    ns = namespace(d)
    results = json.load(open(results_file))
    failures = [e for e in (same(ours, eval(numpy_of(x), ns), x) for x, ours in results.items())
                if e]
    for e in failures:
        print(e)
    print(f"{len(results) - len(failures)} of {len(results)} expressions match numpy")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    if sys.argv[1] == "make":
        print(json.dumps(make(sys.argv[2])))
    elif sys.argv[1] == "check":
        check(sys.argv[2], sys.argv[3])
