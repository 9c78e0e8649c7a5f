#!/usr/bin/env python3
"""netCDF4-python as the reference for netCDF-4 inputs and outputs (tests/array_netcdf.rs).

  netcdf_files.py write FILE    writes a netCDF-4 file with packed, filled and plain variables
                                and prints one JSON line: {VAR: {"shape", "dtype", "values"}}
                                as netCDF4-python reads them by default (masked -> nan)
  netcdf_files.py read FILE VAR prints {"shape", "dtype", "values"} of VAR as netCDF4 reads it
"""
import json
import sys

import netCDF4
import numpy as np


def view(v):
    a = v[:]
    # Masked values (fill, missing) are NaN on our side, in a float type for any variable
    # that declares a fill or missing value (its type cannot depend on the values).
    declared = {"_FillValue", "missing_value"} & set(v.ncattrs())
    if np.ma.isMaskedArray(a) and (declared or np.ma.is_masked(a)):
        a = np.ma.filled(a.astype(np.result_type(a.dtype, np.float32)), np.nan)
    a = np.asarray(a)
    return {"shape": list(a.shape), "dtype": str(a.dtype),
            "values": [repr(float(x)) for x in a.ravel()]}


if sys.argv[1] == "read":
    with netCDF4.Dataset(sys.argv[2]) as d:
        print(json.dumps(view(d[sys.argv[3]])))
    sys.exit(0)

path = sys.argv[2]
with netCDF4.Dataset(path, "w") as d:
    d.createDimension("time", 7)
    d.createDimension("y", 5)
    t = d.createVariable("time", "f8", ("time",))
    t[:] = np.arange(7) * 1.5
    # Packed int16 with float32 attributes and a fill value: float32 out.
    v = d.createVariable("temp", "i2", ("time", "y"), fill_value=-999, chunksizes=(3, 5),
                         zlib=True, complevel=3)
    v.scale_factor = np.float32(0.5)
    v.add_offset = np.float32(10.0)
    v.set_auto_maskandscale(False)
    raw = np.arange(35, dtype="i2").reshape(7, 5)
    raw[2, 3] = -999
    v[:] = raw
    # Packed int32 with float64 attributes: float64 out.
    p = d.createVariable("pressure", "i4", ("time",))
    p.scale_factor = 0.01
    p.add_offset = 1000.0
    p.set_auto_maskandscale(False)
    p[:] = np.array([0, 5, -7, 12, 100000, 3, 1], "i4")
    # float32 with missing_value: float32 out, NaN there.
    w = d.createVariable("wind", "f4", ("time", "y"))
    w.missing_value = np.float32(-1)
    w.set_auto_mask(False)
    a = np.linspace(0, 3, 35, dtype="f4").reshape(7, 5)
    a[0, 0] = -1
    a[6, 4] = -1
    w[:] = a
    # int32 with a fill value: float64 out (NaN at the fill).
    c = d.createVariable("count", "i4", ("time",), fill_value=-1)
    c.set_auto_mask(False)
    c[:] = np.array([4, -1, 2, 9, -1, 0, 7], "i4")
    # uint8 packed with float32: float32 out.
    u = d.createVariable("cloud", "u1", ("time",))
    u.scale_factor = np.float32(0.25)
    u.set_auto_maskandscale(False)
    u[:] = np.array([0, 1, 2, 3, 200, 255, 9], "u1")
    # float64 never written at index 2: netCDF's default fill there, NaN on both sides.
    r = d.createVariable("rain", "f8", ("time",))
    r[0:2] = [1.5, 2.5]
    r[3:] = [4.0, 5.0, 6.0, 7.0]
    # Plain int32 in a group: unchanged.
    g = d.createGroup("grp")
    q = g.createVariable("plain", "i4", ("time",), fill_value=False)
    q[:] = np.arange(7, dtype="i4") * 3
with netCDF4.Dataset(path) as d:
    out = {name: view(d[name]) for name in
           ["time", "temp", "pressure", "wind", "count", "cloud", "rain", "grp/plain"]}
print(json.dumps(out))
