"""NumPy arrays in and out, a worker killed mid-map, a worker Python without a module."""

import os
import signal
import sys
import time

import numpy as np
import pytest

import rdask


def scaled(a, k):
    return a * k


def make(n, seed):
    return np.random.default_rng(seed).standard_normal(n)


def add_all(arrays):
    return sum(arrays)


def sleepy_square(x):
    time.sleep(0.05)
    return x * x


def test_numpy_arrays_go_in_and_come_out(client):
    a = np.arange(1_000_000, dtype=np.float64).reshape(1000, 1000)
    out = client.submit(scaled, a, 2.0).result(timeout=60)
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    np.testing.assert_array_equal(out, a * 2.0)
    # Results decoded from a gather are writable arrays (out-of-band buffers, no copy).
    out[0, 0] = -1.0
    assert out[0, 0] == -1.0
    # Arrays made on workers move worker to worker as dependencies.
    parts = [client.submit(make, 100_000, s) for s in range(6)]
    total = client.submit(add_all, parts).result(timeout=60)
    np.testing.assert_allclose(total, sum(make(100_000, s) for s in range(6)))
    # Structured and non-contiguous arrays survive too.
    rec = np.zeros(3, dtype=[("a", "i4"), ("b", "f8")])
    assert client.submit(lambda r: r, rec).result(timeout=30).dtype == rec.dtype
    strided = np.arange(20.0)[::3]
    np.testing.assert_array_equal(client.submit(lambda v: v, strided).result(timeout=30), strided)


def test_a_worker_killed_mid_map_has_its_results_recomputed():
    with rdask.LocalCluster(n_workers=2, threads_per_worker=1) as cluster:
        with rdask.Client(cluster) as client:
            futures = client.map(sleepy_square, range(80))
            # Let some finish on both workers, then kill one with SIGKILL.
            time.sleep(0.8)
            victim = cluster.worker_pids()[0]
            os.kill(victim, signal.SIGKILL)
            assert client.gather(futures) == [x * x for x in range(80)]
            # The cluster restarted the worker.
            deadline = time.time() + 30
            while client.n_workers() < 2 and time.time() < deadline:
                time.sleep(0.1)
            assert client.n_workers() == 2
            assert victim not in cluster.worker_pids()


def test_a_worker_python_without_the_module_fails_the_task_clearly(client, tmp_path):
    # A module only this process can import: the workers' interpreters cannot find it.
    (tmp_path / "rdask_only_here.py").write_text("def triple(x):\n    return 3 * x\n")
    sys.path.insert(0, str(tmp_path))
    try:
        import rdask_only_here

        f = client.submit(rdask_only_here.triple, 3)
        with pytest.raises(ModuleNotFoundError) as info:
            f.result(timeout=30)
        text = str(info.value.__cause__)
        assert "cannot import 'rdask_only_here'" in text
        assert "--python" in text
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop("rdask_only_here", None)


def test_a_configured_worker_python_that_does_not_exist_is_a_clear_error(tmp_path):
    with rdask.LocalCluster(n_workers=1, python=str(tmp_path / "no-python")) as cluster:
        with rdask.Client(cluster) as client:
            with pytest.raises(rdask.RemoteError, match="cannot start the Python interpreter"):
                client.submit(abs, -1).result(timeout=30)


def test_an_interpreter_that_dies_fails_its_task_and_the_next_task_runs(client):
    f = client.submit(os._exit, 9, pure=False)
    with pytest.raises(rdask.RemoteError, match="died"):
        f.result(timeout=30)
    assert client.submit(abs, -5).result(timeout=30) == 5


def test_bad_cluster_arguments_are_refused():
    with pytest.raises(ValueError, match="threads_per_worker"):
        rdask.LocalCluster(n_workers=1, threads_per_worker=0)
    with pytest.raises(ValueError, match="memory_limit"):
        rdask.LocalCluster(n_workers=1, memory_limit="lots")
    with pytest.raises(ValueError, match="memory limit per worker"):
        rdask.LocalCluster(n_workers=1, memory_limit="1MiB")
