"""Clients, futures and local clusters, with Dask's names and meanings.

Everything that moves is the Rust core's: a call is pickled here (``_wire``), submitted as a
``python.call`` task through the extension's client, run by a worker's warm interpreter, and
its result stays on that worker until someone gathers it (dependencies move worker to
worker, never through this process).
"""

import collections
import os
import shutil
import sys
import threading
import uuid
import weakref
from concurrent.futures import CancelledError

from . import _rdask, _wire

__all__ = ["Client", "Future", "LocalCluster", "as_completed", "wait"]


def _parse_memory(limit):
    """A memory limit as bytes: None or 0 for none, an int of bytes, or '4GiB', '2 GB'."""
    if limit is None:
        return 0
    if isinstance(limit, bool):
        raise TypeError("memory_limit must be bytes (int) or a size like '2GiB'")
    if isinstance(limit, int):
        if limit < 0:
            raise ValueError("memory_limit must be >= 0 bytes (0: no limit)")
        return limit
    if isinstance(limit, str):
        text = limit.strip().replace(" ", "")
        if text.lower() in ("0", "none", ""):
            return 0
        units = {
            "": 1, "b": 1, "k": 1000, "kb": 1000, "m": 1000**2, "mb": 1000**2,
            "g": 1000**3, "gb": 1000**3, "t": 1000**4, "tb": 1000**4,
            "kib": 1024, "mib": 1024**2, "gib": 1024**3, "tib": 1024**4,
        }
        i = len(text)
        while i and not (text[i - 1].isdigit() or text[i - 1] == "."):
            i -= 1
        number, unit = text[:i], text[i:].lower()
        try:
            value = float(number)
        except ValueError:
            value = -1
        if unit not in units or value < 0:
            raise ValueError(
                "memory_limit %r is not a size: use bytes or a number with a unit like "
                "'512MiB', '4GiB', '2GB'" % (limit,)
            )
        return int(value * units[unit])
    raise TypeError("memory_limit must be bytes (int) or a size like '2GiB'")


def _worker_program():
    """The program a LocalCluster runs as its workers: $RDASK_WORKER_PROGRAM, else this
    environment's ``rdask-worker`` (installed with the package), else one on PATH."""
    explicit = os.environ.get("RDASK_WORKER_PROGRAM")
    if explicit:
        return explicit
    beside = os.path.join(os.path.dirname(sys.executable), "rdask-worker")
    if os.path.isfile(beside):
        return beside
    found = shutil.which("rdask-worker")
    if found:
        return found
    raise RuntimeError(
        "cannot find the rdask-worker program (installed with the rdask package next to "
        "%s): reinstall the package, or set RDASK_WORKER_PROGRAM to rdask-worker or to the "
        "rdask-jobqueue binary" % sys.executable
    )


class LocalCluster:
    """A scheduler in this process and ``n_workers`` worker processes on this machine.

    >>> with LocalCluster(n_workers=2, threads_per_worker=1) as cluster:
    ...     with Client(cluster) as client:
    ...         client.submit(sum, [1, 2]).result()
    3

    ``memory_limit`` is per worker (bytes or '2GiB'; 0 or None: no limit). ``python`` is the
    interpreter workers run Python tasks with (default: the submitting one). A worker that
    crashes is restarted, and the results it held are recomputed.
    """

    def __init__(
        self,
        n_workers=None,
        threads_per_worker=1,
        memory_limit=None,
        *,
        python=None,
        local_directory=None,
        worker_program=None,
    ):
        if n_workers is None:
            n_workers = os.cpu_count() or 1
        if not isinstance(n_workers, int) or isinstance(n_workers, bool) or n_workers < 0:
            raise ValueError("n_workers must be a whole number >= 0, got %r" % (n_workers,))
        if (
            not isinstance(threads_per_worker, int)
            or isinstance(threads_per_worker, bool)
            or threads_per_worker < 1
        ):
            raise ValueError(
                "threads_per_worker must be a whole number >= 1, got %r" % (threads_per_worker,)
            )
        args = []
        if python is not None:
            args += ["--python", os.fspath(python)]
        self._core = _rdask.LocalCluster(
            n_workers,
            threads_per_worker,
            _parse_memory(memory_limit),
            os.fspath(worker_program) if worker_program else _worker_program(),
            os.fspath(local_directory) if local_directory else None,
            args,
        )
        self.n_workers = n_workers
        self.threads_per_worker = threads_per_worker

    @property
    def scheduler_address(self):
        return self._core.scheduler_address

    def worker_pids(self):
        """The process ids of the running worker processes."""
        return self._core.worker_pids()

    def close(self):
        """Stops the workers and the scheduler."""
        self._core.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        return "LocalCluster(%r, workers=%d, threads=%d)" % (
            self.scheduler_address if self._core else None,
            self.n_workers,
            self.threads_per_worker,
        )


_current = []  # the clients made, most recent last (weak references)


def default_client():
    """The most recently made client that is still open (like Dask's default client)."""
    while _current:
        c = _current[-1]()
        if c is not None and c._core is not None:
            return c
        _current.pop()
    raise ValueError("no rdask.Client: make one first (rdask.Client(cluster))")


class Client:
    """A connection to an rdask scheduler: submit Python functions, get futures back.

    ``Client(cluster)`` connects to a :class:`LocalCluster`; ``Client()`` starts one of its
    own (closed with the client); ``Client.connect_named("NAME")`` connects to a cluster made
    with ``rdask-jobqueue up --name NAME``.
    """

    def __init__(self, cluster=None, **local_cluster_kwargs):
        self._own_cluster = None
        if cluster is None:
            cluster = self._own_cluster = LocalCluster(**local_cluster_kwargs)
        elif local_cluster_kwargs:
            raise TypeError("keyword arguments are for the LocalCluster Client() starts")
        if isinstance(cluster, LocalCluster):
            core = cluster._core.client()
        elif isinstance(cluster, _rdask.Client):
            core = cluster
        else:
            raise TypeError(
                "Client(cluster): expected an rdask.LocalCluster (or use "
                "Client.connect_named(NAME)), got %r" % (cluster,)
            )
        self._init(core)

    def _init(self, core):
        self._core = core
        self._lock = threading.Lock()
        # key -> (task id, number of live Future objects); a key is released when its last
        # Future goes (as in Dask).
        self._keys = {}
        self._ids = {}
        self._cancelled = set()
        _current.append(weakref.ref(self))

    @classmethod
    def connect_named(cls, name="default"):
        """A client of the named cluster made by ``rdask-jobqueue up --name NAME``."""
        self = cls.__new__(cls)
        self._own_cluster = None
        self._init(_rdask.Client.connect_named(name))
        return self

    # -- futures' bookkeeping ---------------------------------------------------------------

    def _future(self, key, tid):
        with self._lock:
            entry = self._keys.get(key)
            self._keys[key] = (tid, (entry[1] if entry else 0) + 1)
            self._ids[tid] = key
        return Future(key, tid, self)

    def _forget(self, key):
        """A Future of `key` went away; the last one releases it."""
        release = None
        with self._lock:
            entry = self._keys.get(key)
            if entry is None:
                return
            tid, n = entry
            if n > 1:
                self._keys[key] = (tid, n - 1)
            else:
                del self._keys[key]
                self._ids.pop(tid, None)
                release = tid
        core = self._core
        if release is not None and core is not None:
            try:
                core.release([release])
            except Exception:  # the connection may be gone already: nothing to release
                pass

    # -- submitting -------------------------------------------------------------------------

    def submit(self, fn, *args, key=None, pure=True, **kwargs):
        """Runs ``fn(*args, **kwargs)`` on a worker; returns a :class:`Future`.

        Futures among the arguments (also nested in lists, tuples, dicts) are replaced by
        their results on the worker. With ``pure=True`` the key is a hash of the function and
        its arguments, so the same call twice is one task; ``pure=False`` always runs anew.
        """
        if not callable(fn):
            raise TypeError("submit: %r is not callable" % (fn,))
        return self._submit_many(fn, [(args, kwargs)], [key], pure)[0]

    def map(self, fn, *iterables, key=None, pure=True, **kwargs):
        """``submit(fn, *items)`` for the items of the iterables taken in parallel (as
        ``map``); all tasks go to the scheduler as one graph. ``key`` may be a list of keys
        or a prefix."""
        if not callable(fn):
            raise TypeError("map: %r is not callable" % (fn,))
        if not iterables:
            raise TypeError("map: give at least one iterable")
        calls = [(items, kwargs) for items in zip(*iterables)]
        if isinstance(key, (list, tuple)):
            if len(key) != len(calls):
                raise ValueError("map: %d keys for %d tasks" % (len(key), len(calls)))
            keys = list(key)
        elif key is None or isinstance(key, str):
            keys = [None] * len(calls)
        else:
            raise TypeError("map: key must be a prefix or a list of keys")
        return self._submit_many(fn, calls, keys, pure, prefix=key if isinstance(key, str) else None)

    def _submit_many(self, fn, calls, keys, pure, prefix=None):
        if self._core is None:
            raise RuntimeError("this client is closed")
        fn_blob = _wire.dumps_function(fn)
        name = prefix or getattr(fn, "__name__", None) or type(fn).__name__
        name = name.replace("<", "").replace(">", "") or "task"
        out = [None] * len(calls)
        new_calls, new_at, new_keys = [], [], []
        for i, ((args, kwargs), key) in enumerate(zip(calls, keys)):
            args_blob, futures = _wire.dumps_arguments(args, kwargs)
            for f in futures:
                if f.client is not self:
                    raise ValueError("a future of another client cannot be an argument here")
                if f.key in self._cancelled:
                    raise CancelledError("argument %s was cancelled" % f.key)
            if key is None:
                token = (
                    _wire.tokenize(fn_blob, args_blob, [f.key for f in futures])
                    if pure
                    else uuid.uuid4().hex
                )
                key = "%s-%s" % (name, token)
            with self._lock:
                known = self._keys.get(key)
            if known is not None and key not in self._cancelled:
                out[i] = self._future(key, known[0])
                continue
            self._cancelled.discard(key)
            new_calls.append((_wire.call_bytes(fn_blob, args_blob), [f._tid for f in futures]))
            new_at.append(i)
            new_keys.append(key)
        if new_calls:
            tids = self._core.submit(_wire.PYTHON, new_calls, True)
            for i, key, tid in zip(new_at, new_keys, tids):
                out[i] = self._future(key, tid)
        return out

    # -- results ----------------------------------------------------------------------------

    def _raise_for(self, key, tid):
        state, error = self._core.key_state(tid)
        if state == "erred":
            raise _wire.exception_from(error)
        if state == "lost":
            raise RuntimeError("lost the scheduler: %s" % error)

    def _gather_ids(self, futures, timeout):
        for f in futures:
            if f.key in self._cancelled:
                raise CancelledError(f.key)
        tids = [f._tid for f in futures]
        failed = self._core.wait(tids, timeout)
        if failed is not None:
            self._raise_for(self._ids.get(failed), failed)
            raise RuntimeError("task %s failed" % self._ids.get(failed, failed))
        return [_wire.decode(b) for b in self._core.gather(tids, timeout)]

    def gather(self, futures, errors="raise"):
        """The results of futures (a Future, or a list, tuple, set or dict of them, nested);
        the first failed task's exception is raised. Results come straight from the workers
        holding them."""
        if errors != "raise":
            raise ValueError("gather: only errors='raise' is supported")
        flat = []

        def collect(x):
            if isinstance(x, Future):
                flat.append(x)
            elif isinstance(x, (list, tuple, set)):
                for y in x:
                    collect(y)
            elif isinstance(x, dict):
                for y in x.values():
                    collect(y)

        collect(futures)
        unique = list({f.key: f for f in flat}.values())
        values = dict(zip((f.key for f in unique), self._gather_ids(unique, None)))

        def rebuild(x):
            if isinstance(x, Future):
                return values[x.key]
            if isinstance(x, (list, tuple, set)):
                return type(x)(rebuild(y) for y in x)
            if isinstance(x, dict):
                return {k: rebuild(v) for k, v in x.items()}
            return x

        return rebuild(futures)

    def cancel(self, futures):
        """Cancels the futures' tasks (their results are dropped)."""
        if isinstance(futures, Future):
            futures = [futures]
        for f in futures:
            f.cancel()

    def n_workers(self):
        """The number of workers connected now."""
        return self._core.n_workers()

    @property
    def scheduler_address(self):
        return self._core.address

    def close(self):
        """Closes the connection (and the LocalCluster ``Client()`` started, if any)."""
        core, self._core = self._core, None
        if core is not None:
            core.close()
        if self._own_cluster is not None:
            self._own_cluster.close()
            self._own_cluster = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self):
        return "<rdask.Client %s>" % (self._core.address if self._core else "closed")


class Future:
    """A task's result, still on the worker that computed it."""

    __slots__ = ("key", "_tid", "client", "__weakref__")

    def __init__(self, key, tid, client):
        self.key = key
        self._tid = tid
        self.client = client

    def result(self, timeout=None):
        """Waits for the result (at most ``timeout`` seconds: TimeoutError) and returns it;
        a task that raised re-raises its exception here, with the remote traceback."""
        return self.client._gather_ids([self], timeout)[0]

    def exception(self, timeout=None):
        """Waits for the task; its exception, or None when it succeeded."""
        if self.key in self.client._cancelled:
            raise CancelledError(self.key)
        failed = self.client._core.wait([self._tid], timeout)
        if failed is None:
            return None
        state, error = self.client._core.key_state(self._tid)
        return _wire.exception_from(error or "task %s failed" % self.key)

    def done(self):
        """Whether the task finished (with a result or an error), without waiting."""
        if self.key in self.client._cancelled:
            return True
        return self.client._core.key_state(self._tid)[0] != "pending"

    def cancelled(self):
        return self.key in self.client._cancelled

    def cancel(self):
        """Cancels the task (stopped if nothing else needs it); result() then raises
        CancelledError."""
        c = self.client
        if self.key not in c._cancelled and c._core is not None:
            c._cancelled.add(self.key)
            c._core.release([self._tid])
        return True

    @property
    def status(self):
        if self.key in self.client._cancelled:
            return "cancelled"
        return {"pending": "pending", "ready": "finished", "erred": "error", "lost": "lost"}[
            self.client._core.key_state(self._tid)[0]
        ]

    def __del__(self):
        try:
            self.client._forget(self.key)
        except Exception:
            pass

    def __repr__(self):
        try:
            status = self.status
        except Exception:
            status = "closed"
        return "<Future: %s, key: %s>" % (status, self.key)


class as_completed:
    """Iterates over futures as they finish (in completion order, not input order).

    >>> for future in as_completed(client.map(inc, range(10))):
    ...     print(future.result())
    """

    def __init__(self, futures=(), with_results=False, timeout=None):
        self._pending = {}
        self._done = collections.deque()
        self.with_results = with_results
        self.timeout = timeout
        for f in futures:
            self.add(f)

    def add(self, future):
        self._pending[future._tid] = future

    def count(self):
        return len(self._pending) + len(self._done)

    def __iter__(self):
        return self

    def __next__(self):
        if not self._done:
            if not self._pending:
                raise StopIteration
            cancelled = [t for t, f in self._pending.items() if f.cancelled()]
            if cancelled:
                ready = cancelled
            else:
                any_future = next(iter(self._pending.values()))
                ready = any_future.client._core.wait_any(list(self._pending), self.timeout)
            self._done.extend(self._pending.pop(t) for t in ready)
        f = self._done.popleft()
        if self.with_results:
            return f, f.result()
        return f


def wait(futures, timeout=None):
    """Waits until every future is done (finished or failed)."""
    futures = list(futures)
    by_client = {}
    for f in futures:
        by_client.setdefault(id(f.client), (f.client, []))[1].append(f)
    for client, fs in by_client.values():
        pending = [f._tid for f in fs if not f.cancelled()]
        # One wait for all; each failed key it stops at is set aside and the rest waited for.
        while pending:
            failed = client._core.wait(pending, timeout)
            if failed is None:
                break
            pending = [t for t in pending if t != failed]
    return futures
