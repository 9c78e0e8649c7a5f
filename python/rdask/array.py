"""Chunked n-d arrays over HDF5, like ``dask.array``, computed by the rdask Rust core.

An :class:`Array` is lazy: operators, NumPy ufuncs and methods build the expression text of
the ``rdask-jobqueue array`` command (``(x + x.T) - x.mean(axis=0)``), which the core
evaluates with the same parser and plans and runs with the same code, so both give the same
results, chunk by chunk, out of core. Shape and type errors show when the expression is
built, before anything runs.

    import rdask, rdask.array as ra
    with rdask.Client(n_workers=2):
        x = ra.from_hdf5("data.h5", "/x")
        centred = (x - x.mean(axis=0)).compute()      # a NumPy array
        (x + x.T).store("out.h5", "/y")               # an HDF5 dataset
"""

import itertools
import math
import numbers
import os

import numpy as np

from . import _rdask

__all__ = [
    "Array", "from_hdf5", "ones", "zeros", "full", "arange", "random",
    "where", "concatenate", "stack", "maximum", "minimum",
]

_names = itertools.count()

# NumPy ufuncs the expression language has, by NumPy's name: binary ones as operators,
# unary ones as functions of the same (or the language's) name.
_BINARY_UFUNCS = {
    "add": "+", "subtract": "-", "multiply": "*", "divide": "/", "true_divide": "/",
    "floor_divide": "//", "remainder": "%", "power": "**", "matmul": "@",
    "bitwise_and": "&", "bitwise_or": "|", "bitwise_xor": "^",
    "equal": "==", "not_equal": "!=", "less": "<", "less_equal": "<=",
    "greater": ">", "greater_equal": ">=",
}
_FUNCTION_UFUNCS = {"maximum", "minimum"}
_UNARY_UFUNCS = {
    "sqrt", "exp", "expm1", "log", "log10", "log1p", "absolute", "sin", "cos", "tanh",
    "arcsin", "arccos", "arctan", "floor", "ceil", "sign", "isnan", "isfinite", "negative",
    "invert", "logical_not",
}


def _literal(v):
    """A Python value as the expression language writes it."""
    if isinstance(v, Array):
        return v._expr
    if isinstance(v, np.generic):
        v = v.item()
    if v is None:
        return "None"
    if isinstance(v, bool):
        return "True" if v else "False"
    if isinstance(v, numbers.Integral):
        return "(%d)" % v if v < 0 else "%d" % v
    if isinstance(v, numbers.Real):
        v = float(v)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "(-inf)"
        return "(%r)" % v if v < 0 else repr(v)
    if isinstance(v, str):
        return repr(v)
    if isinstance(v, np.dtype) or (isinstance(v, type) and issubclass(v, np.generic)):
        return repr(np.dtype(v).name)
    if isinstance(v, (tuple, list)):
        inner = ", ".join(_literal(x) for x in v)
        return "(%s,)" % inner if len(v) == 1 else "(%s)" % inner
    if isinstance(v, slice):
        parts = ["" if p is None else _literal(p) for p in (v.start, v.stop, v.step)]
        return ":".join(parts).rstrip(":") or ":"
    if v is Ellipsis:
        return "..."
    raise TypeError("rdask.array: %r (%s) has no place in an array expression"
                    % (v, type(v).__name__))


def _inputs_of(*values):
    merged = {}
    for v in values:
        if isinstance(v, Array):
            merged.update(v._inputs)
        elif isinstance(v, (list, tuple)):
            merged.update(_inputs_of(*v))
    return merged


def _call(name, *args, **kwargs):
    words = [_literal(a) for a in args]
    words += ["%s=%s" % (k, _literal(v)) for k, v in kwargs.items() if v is not None]
    return "%s(%s)" % (name, ", ".join(words))


class Array:
    """A lazy chunked array: ``.shape``, ``.dtype``, ``.chunks`` are known, nothing is
    computed until :meth:`compute` or :meth:`store`."""

    __array_priority__ = 100

    def __init__(self, expr, inputs):
        self._expr = expr
        self._inputs = inputs
        shape, dtype, chunks = _rdask.array_info(expr, self._input_list())
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype)
        self.chunks = tuple(tuple(c) for c in chunks)

    def _input_list(self):
        return [(n, f, d, c) for n, (f, d, c) in self._inputs.items()]

    def _new(self, expr, *others):
        return Array(expr, _inputs_of(self, *others))

    @property
    def expr(self):
        """The expression text, as the ``array`` command takes it."""
        return self._expr

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def size(self):
        return math.prod(self.shape)

    @property
    def nbytes(self):
        return self.size * self.dtype.itemsize

    @property
    def chunksize(self):
        return tuple(max(c) if c else 0 for c in self.chunks)

    def __repr__(self):
        return "rdask.array<%s, shape=%s, dtype=%s, chunksize=%s>" % (
            self._expr, self.shape, self.dtype, self.chunksize)

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    # -- running ----------------------------------------------------------------------------

    def compute(self, client=None):
        """The value as a NumPy array (the computed buffer itself, not a copy), on
        ``client``'s cluster, else the current client's; with no client, a LocalCluster is
        started for the computation."""
        from ._client import Client, default_client

        if client is None:
            try:
                client = default_client()
            except ValueError:
                with Client() as own:
                    return self.compute(own)
        out = _rdask.array_compute(client._core, self._expr, self._input_list())
        if self.dtype == np.bool_:
            out = out.view(np.bool_)
        return out

    def store(self, path, dataset, overwrite=False, client=None):
        """Writes the array to HDF5 ``path:dataset``; the file appears (or the dataset is
        replaced, with ``overwrite=True``) only once every chunk is written."""
        from ._client import Client, default_client

        if client is None:
            try:
                client = default_client()
            except ValueError:
                with Client() as own:
                    return self.store(path, dataset, overwrite, own)
        _rdask.array_store(client._core, self._expr, self._input_list(),
                           os.fspath(path), dataset, overwrite)

    def __array__(self, dtype=None, copy=None):
        out = self.compute()
        return out if dtype is None else out.astype(dtype)

    # -- operators --------------------------------------------------------------------------

    def _binary(self, op, other, reverse=False):
        if not isinstance(other, (Array, numbers.Number, np.generic)):
            return NotImplemented
        a, b = (_literal(other), self._expr) if reverse else (self._expr, _literal(other))
        return self._new("(%s %s %s)" % (a, op, b), other)

    def __add__(self, o): return self._binary("+", o)
    def __radd__(self, o): return self._binary("+", o, True)
    def __sub__(self, o): return self._binary("-", o)
    def __rsub__(self, o): return self._binary("-", o, True)
    def __mul__(self, o): return self._binary("*", o)
    def __rmul__(self, o): return self._binary("*", o, True)
    def __truediv__(self, o): return self._binary("/", o)
    def __rtruediv__(self, o): return self._binary("/", o, True)
    def __floordiv__(self, o): return self._binary("//", o)
    def __rfloordiv__(self, o): return self._binary("//", o, True)
    def __mod__(self, o): return self._binary("%", o)
    def __rmod__(self, o): return self._binary("%", o, True)
    def __pow__(self, o): return self._binary("**", o)
    def __rpow__(self, o): return self._binary("**", o, True)
    def __matmul__(self, o): return self._binary("@", o)
    def __rmatmul__(self, o): return self._binary("@", o, True)
    def __and__(self, o): return self._binary("&", o)
    def __rand__(self, o): return self._binary("&", o, True)
    def __or__(self, o): return self._binary("|", o)
    def __ror__(self, o): return self._binary("|", o, True)
    def __xor__(self, o): return self._binary("^", o)
    def __rxor__(self, o): return self._binary("^", o, True)
    def __eq__(self, o): return self._binary("==", o)
    def __ne__(self, o): return self._binary("!=", o)
    def __lt__(self, o): return self._binary("<", o)
    def __le__(self, o): return self._binary("<=", o)
    def __gt__(self, o): return self._binary(">", o)
    def __ge__(self, o): return self._binary(">=", o)
    __hash__ = None

    def __neg__(self): return self._new("(-%s)" % self._expr)
    def __pos__(self): return self
    def __invert__(self): return self._new("(~%s)" % self._expr)
    def __abs__(self): return self._new("abs(%s)" % self._expr)

    def __bool__(self):
        raise ValueError("the truth value of an rdask array is ambiguous: compute() it first")

    def __getitem__(self, index):
        if not isinstance(index, tuple):
            index = (index,)
        parts = []
        for i in index:
            if isinstance(i, (Array, list, np.ndarray)):
                raise TypeError("rdask.array: only integers, slices, None and ... index "
                                "an array (no fancy indexing)")
            parts.append("newaxis" if i is None else _literal(i))
        return self._new("%s[%s]" % (self._expr, ", ".join(parts)))

    # -- NumPy protocols --------------------------------------------------------------------

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        if method != "__call__" or kwargs.get("out") is not None:
            return NotImplemented
        name = ufunc.__name__
        if name in _BINARY_UFUNCS and len(inputs) == 2:
            a, b = inputs
            return Array("(%s %s %s)" % (_literal(a), _BINARY_UFUNCS[name], _literal(b)),
                         _inputs_of(a, b))
        if (name in _UNARY_UFUNCS and len(inputs) == 1) or name in _FUNCTION_UFUNCS:
            return Array(_call(name, *inputs), _inputs_of(*inputs))
        return NotImplemented

    def __array_function__(self, func, types, args, kwargs):
        mine = _FUNCTIONS.get(func.__name__)
        if mine is None:
            return NotImplemented
        return mine(*args, **kwargs)

    # -- methods ----------------------------------------------------------------------------

    def _method(self, name, *args, **kwargs):
        return self._new("%s.%s" % (self._expr, _call(name, *args, **kwargs)), *args)

    def _reduction(self, name, axis=None, dtype=None, out=None, keepdims=False, **kw):
        if out is not None or dtype is not None:
            raise TypeError("rdask.array: %s(dtype=, out=) is not supported; use astype" % name)
        kwargs = dict(kw, axis=axis)
        if keepdims:
            kwargs["keepdims"] = True
        return self._method(name, **kwargs)

    def sum(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduction("sum", axis, dtype, out, keepdims)

    def prod(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduction("prod", axis, dtype, out, keepdims)

    def mean(self, axis=None, dtype=None, out=None, keepdims=False):
        return self._reduction("mean", axis, dtype, out, keepdims)

    def min(self, axis=None, out=None, keepdims=False):
        return self._reduction("min", axis, None, out, keepdims)

    def max(self, axis=None, out=None, keepdims=False):
        return self._reduction("max", axis, None, out, keepdims)

    def any(self, axis=None, out=None, keepdims=False):
        return self._reduction("any", axis, None, out, keepdims)

    def all(self, axis=None, out=None, keepdims=False):
        return self._reduction("all", axis, None, out, keepdims)

    def var(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        kw = {"ddof": ddof} if ddof else {}
        return self._reduction("var", axis, dtype, out, keepdims, **kw)

    def std(self, axis=None, dtype=None, out=None, ddof=0, keepdims=False):
        kw = {"ddof": ddof} if ddof else {}
        return self._reduction("std", axis, dtype, out, keepdims, **kw)

    def argmin(self, axis=None, out=None):
        return self._reduction("argmin", axis, None, out)

    def argmax(self, axis=None, out=None):
        return self._reduction("argmax", axis, None, out)

    def cumsum(self, axis=None, dtype=None, out=None):
        return self._reduction("cumsum", axis, dtype, out)

    def cumprod(self, axis=None, dtype=None, out=None):
        return self._reduction("cumprod", axis, dtype, out)

    def astype(self, dtype):
        return self._method("astype", np.dtype(dtype).name)

    def rechunk(self, chunks):
        return self._method("rechunk", tuple(chunks) if not isinstance(chunks, int) else chunks)

    def reshape(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
            shape = tuple(shape[0])
        return self._method("reshape", tuple(shape))

    def transpose(self, *axes):
        if len(axes) == 1 and isinstance(axes[0], (tuple, list)):
            axes = tuple(axes[0])
        return self._method("transpose", *axes)

    @property
    def T(self):
        return self._new("%s.T" % self._expr)

    def squeeze(self, axis=None):
        return self._method("squeeze", axis=axis)

    def round(self, decimals=0):
        return self._method("round", decimals) if decimals else self._method("round")

    def clip(self, min=None, max=None):
        return self._new("clip(%s, %s, %s)" % (self._expr, _literal(min), _literal(max)),
                         min, max)

    def dot(self, other):
        return self._new("dot(%s, %s)" % (self._expr, _literal(other)), other)


def from_hdf5(path, dataset, chunks=None):
    """The dataset ``path:dataset`` as a lazy array; ``chunks`` is its chunk shape (default:
    the file's chunking, grown to about 128 MiB chunks)."""
    name = "x%d" % next(_names)
    c = None if chunks is None else [int(n) for n in chunks]
    return Array(name, {name: (os.fspath(path), dataset, c)})


def _generator(name, *args, **kwargs):
    return Array(_call(name, *args, **kwargs), {})


def ones(shape, dtype=None, chunks=None):
    """An array of ones (float64 unless ``dtype``)."""
    return _generator("ones", tuple(np.atleast_1d(shape).tolist()), chunks=chunks,
                      dtype=None if dtype is None else np.dtype(dtype).name)


def zeros(shape, dtype=None, chunks=None):
    return _generator("zeros", tuple(np.atleast_1d(shape).tolist()), chunks=chunks,
                      dtype=None if dtype is None else np.dtype(dtype).name)


def full(shape, fill_value, dtype=None, chunks=None):
    return _generator("full", tuple(np.atleast_1d(shape).tolist()), fill_value, chunks=chunks,
                      dtype=None if dtype is None else np.dtype(dtype).name)


def arange(*args, dtype=None, chunks=None):
    return _generator("arange", *args, chunks=chunks,
                      dtype=None if dtype is None else np.dtype(dtype).name)


def random(shape, seed=0, chunks=None):
    """Uniform values in [0, 1) (float64), reproducible from ``seed`` chunk by chunk."""
    return _generator("random", tuple(np.atleast_1d(shape).tolist()), seed=seed, chunks=chunks)


def where(condition, x, y):
    return Array(_call("where", condition, x, y), _inputs_of(condition, x, y))


def maximum(a, b):
    return Array(_call("maximum", a, b), _inputs_of(a, b))


def minimum(a, b):
    return Array(_call("minimum", a, b), _inputs_of(a, b))


def concatenate(arrays, axis=0):
    arrays = list(arrays)
    return Array(_call("concatenate", arrays, axis=axis), _inputs_of(arrays))


def stack(arrays, axis=0):
    arrays = list(arrays)
    return Array(_call("stack", arrays, axis=axis), _inputs_of(arrays))


def _method_function(name):
    def f(a, *args, **kwargs):
        return getattr(a, name)(*args, **kwargs)

    return f


_FUNCTIONS = {
    "where": where, "concatenate": concatenate, "stack": stack,
    "maximum": maximum, "minimum": minimum,
    "dot": lambda a, b: a.dot(b) if isinstance(a, Array) else Array(
        _call("dot", a, b), _inputs_of(a, b)),
    **{n: _method_function(n) for n in (
        "sum", "prod", "mean", "min", "max", "amin", "amax", "var", "std", "any", "all",
        "argmin", "argmax", "cumsum", "cumprod", "transpose", "reshape", "squeeze", "round",
        "around", "clip")},
}
_FUNCTIONS["amin"] = _method_function("min")
_FUNCTIONS["amax"] = _method_function("max")
_FUNCTIONS["around"] = _method_function("round")
