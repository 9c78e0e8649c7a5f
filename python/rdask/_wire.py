"""How Python values become task results and calls become task arguments.

The result encoding is owned by the worker's runner script (src/kernels/python_runner.py,
embedded in the extension as ``RUNNER_SOURCE``): this module executes that same source, so
the client and the workers cannot disagree about it.
"""

import hashlib
import io
import pickle
import struct
import sys

import cloudpickle

from . import _rdask

_runner = {"__name__": "rdask._runner"}
exec(compile(_rdask.RUNNER_SOURCE, "rdask/_runner.py", "exec"), _runner)

encode = _runner["encode"]
decode = _runner["decode"]
EXCEPTION_MARKER = _runner["EXCEPTION_MARKER"]
_U64 = struct.Struct("<Q")

#: The interpreter workers use for this client's tasks unless they are configured otherwise.
PYTHON = sys.executable or "python3"


_Future = None


def _is_future(obj):
    global _Future
    if _Future is None:
        from ._client import Future as _Future
    return type(obj) is _Future


class _FuturePickler(pickle.Pickler):
    """Pickles (args, kwargs) with each Future as a persistent id (its input number), found
    wherever it is nested; records the futures in order."""

    def __init__(self, file, futures):
        super().__init__(file, protocol=5)
        self.futures = futures
        self._index = {}

    def persistent_id(self, obj):
        if _is_future(obj):
            i = self._index.get(obj.key)
            if i is None:
                i = self._index[obj.key] = len(self.futures)
                self.futures.append(obj)
            return str(i)
        return None


class _FutureCloudPickler(cloudpickle.Pickler):
    def __init__(self, file, futures):
        super().__init__(file, protocol=5)
        self.futures = futures
        self._index = {}

    persistent_id = _FuturePickler.persistent_id


def dumps_function(fn):
    """The function's pickle (by reference when importable, by value otherwise)."""
    return cloudpickle.dumps(fn, protocol=5)


# Arguments of these types cannot hold a future: pickled without looking (the common case
# of `map` over numbers or names stays in C).
_ATOMS = frozenset((int, float, str, bytes, bool, type(None), complex))


def dumps_arguments(args, kwargs):
    """(pickle of (args, kwargs), the futures in it in input order)."""
    if all(type(a) in _ATOMS for a in args) and all(type(v) in _ATOMS for v in kwargs.values()):
        return pickle.dumps((args, kwargs), protocol=5), []
    for pickler in (_FuturePickler, _FutureCloudPickler):
        futures = []
        buf = io.BytesIO()
        try:
            pickler(buf, futures).dump((args, kwargs))
            return buf.getvalue(), futures
        except (pickle.PicklingError, AttributeError, TypeError):
            if pickler is _FutureCloudPickler:
                raise
    raise AssertionError("unreachable")


def call_bytes(fn_blob, args_blob):
    """A task's call: the function's pickle with its length, then the arguments' pickle."""
    return b"".join((_U64.pack(len(fn_blob)), fn_blob, args_blob))


def tokenize(fn_blob, args_blob, dep_keys):
    """A pure call's key token: the same function and arguments give the same key."""
    h = hashlib.sha1(fn_blob)
    h.update(args_blob)
    for k in dep_keys:
        h.update(k.encode())
    return h.hexdigest()


class RemoteTraceback(Exception):
    """The traceback of an exception raised on a worker (the ``__cause__`` of the exception
    re-raised in the caller)."""

    def __init__(self, tb):
        super().__init__(tb)
        self.tb = tb

    def __str__(self):
        return self.tb


class RemoteError(RuntimeError):
    """A task failed on a worker for a reason that is not a Python exception of its own (its
    interpreter died, its worker was lost too often, ...), or one that could not be
    unpickled here."""


def exception_from(text):
    """The exception a failed task's error text describes, with its remote traceback."""
    head, sep, blob = text.rpartition("\n" + EXCEPTION_MARKER)
    if sep:
        import base64

        try:
            exc = pickle.loads(base64.b64decode(blob.strip()))
        except Exception:
            return RemoteError(head)
        if isinstance(exc, BaseException):
            exc.__cause__ = RemoteTraceback('\n"""\n' + head.rstrip() + '\n"""')
            return exc
    return RemoteError(text)
