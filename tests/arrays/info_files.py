#!/usr/bin/env python3
"""Writes HDF5 files with h5py for tests/array_info.rs and prints, per file, h5py's own view
of every dataset (tests only):

  info_files.py DIR   -> one JSON line: {"FILE": {"/path": {shape, dtype, chunks, filters,
                         memory_bytes, stored_bytes}, ...}, ...}; groups as {"group": true}
"""
import json
import os
import sys

import h5py
import numpy as np

d = sys.argv[1]
rng = np.random.default_rng(1)
files = {}

path = os.path.join(d, "mixed.h5")
with h5py.File(path, "w") as f:
    f.create_dataset("x", data=rng.random((1000, 200)), chunks=(100, 50),
                     compression="gzip", compression_opts=4, shuffle=True)
    f.create_dataset("grp/sub/i", data=np.arange(10, dtype="u2"))
    f.create_dataset("grp/l", data=np.zeros((300, 30), "f4"), chunks=(150, 15),
                     compression="lzf", fletcher32=True)
    f.create_dataset("c", data=np.ones(4, "c16"))
    f.create_dataset("b", data=np.ones(4, bool))
    f.create_dataset("s", data=np.arange(100.0), scaleoffset=2, chunks=(10,))
    f.create_dataset("never_written", shape=(5, 5), dtype="f8")
    f.create_dataset("gz9", data=np.arange(5000, dtype="i8"), compression=9)
    f.create_group("empty")
files["mixed.h5"] = path


def view(path):
    out = {}
    with h5py.File(path, "r") as f:
        def visit(name, obj):
            key = "/" + name
            if isinstance(obj, h5py.Group):
                out[key] = {"group": True}
                return
            filters = []
            # HDF5's pipeline order (as written): shuffle before deflate, fletcher32 last.
            plist = obj.id.get_create_plist()
            for k in range(plist.get_nfilters()):
                code, _flags, values, _name = plist.get_filter(k)
                filters.append([int(code), [int(v) for v in values]])
            out[key] = {
                "shape": list(obj.shape),
                "dtype": str(obj.dtype),
                "chunks": list(obj.chunks) if obj.chunks else None,
                "filters": filters,
                "memory_bytes": int(obj.size * obj.dtype.itemsize),
                "stored_bytes": int(obj.id.get_storage_size()),
            }
        f.visititems(visit)
    return out


print(json.dumps({name: view(p) for name, p in files.items()}))
