#!/usr/bin/env python3
"""NumPy as the reference for edge semantics (tests/array_semantics.rs; tests only).

  semantics.py EXPR...   prints a JSON line with NumPy's version, then one per expression:
                         {"expr", "shape", "dtype", "values"} (values as Python reprs, so
                         nan and inf survive) or {"expr", "error": "Type: message"}
"""
import json
import sys
import warnings

import numpy as np

# var(ddof=n) and the mean of nothing warn in NumPy; the values are what we compare.
warnings.simplefilter("ignore")
drop = lambda fn: (lambda *a, chunks=None, **k: fn(*a, **k))
ns = dict(np=np, ones=drop(np.ones), zeros=drop(np.zeros), full=drop(np.full),
          arange=drop(np.arange))
print(json.dumps({"numpy": np.__version__}))
for expr in sys.argv[1:]:
    try:
        v = np.asarray(eval(expr, dict(ns)))
        r = {"shape": list(v.shape), "dtype": str(v.dtype),
             "values": [repr(float(x)) for x in v.ravel()]}
    except Exception as e:  # NumPy's refusal is the expected answer
        r = {"error": f"{type(e).__name__}: {e}"}
    print(json.dumps({"expr": expr, **r}))
