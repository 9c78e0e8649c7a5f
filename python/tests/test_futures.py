"""Futures on a LocalCluster of 2 workers: results, errors, dependencies, map, as_completed,
cancellation, closures, keys."""

import operator
import threading
import time
import traceback

import pytest

import rdask


def inc(x):
    return x + 1


def add(a, b):
    return a + b


def fail(x):
    raise ValueError("bad value %r" % (x,))


def slow_identity(x, seconds):
    time.sleep(seconds)
    return x


def total(items):
    return sum(items)


def dict_sum(d):
    return d["a"] + sum(d["rest"])


def test_submit_returns_the_result(client):
    f = client.submit(inc, 41)
    assert f.result(timeout=30) == 42
    assert f.done()
    assert f.exception() is None
    assert f.key.startswith("inc-")


def test_a_remote_exception_is_raised_with_its_remote_traceback(client):
    f = client.submit(fail, 7)
    with pytest.raises(ValueError, match="bad value 7") as info:
        f.result(timeout=30)
    cause = info.value.__cause__
    assert isinstance(cause, rdask.RemoteTraceback)
    # The worker's frames: the function that raised, in this file.
    assert "in fail" in str(cause) and "bad value 7" in str(cause)
    assert isinstance(f.exception(), ValueError)
    assert f.done()
    # A dependent of a failed task fails with the same exception.
    g = client.submit(inc, f)
    with pytest.raises(ValueError, match="bad value 7"):
        g.result(timeout=30)


def test_futures_as_arguments_are_dependencies_also_nested(client):
    a = client.submit(inc, 1)
    b = client.submit(inc, 2)
    c = client.submit(add, a, b)
    assert c.result(timeout=30) == 5
    d = client.submit(total, [a, b, c, 10])
    assert d.result(timeout=30) == 2 + 3 + 5 + 10
    e = client.submit(dict_sum, {"a": a, "rest": (b, c)})
    assert e.result(timeout=30) == 10
    # kwargs too
    f = client.submit(add, a=a, b=c)
    assert f.result(timeout=30) == 7


def test_map_over_several_iterables_and_gather(client):
    xs = list(range(100))
    ys = list(range(100, 200))
    futures = client.map(add, xs, ys)
    assert len(futures) == 100
    assert client.gather(futures) == [x + y for x, y in zip(xs, ys)]
    # map stops at the shortest iterable, like map()
    assert client.gather(client.map(add, [1, 2, 3], [10, 20])) == [11, 22]
    # gather keeps the structure it is given
    a, b = client.map(inc, [1, 2])
    assert client.gather({"x": a, "y": [b, 5]}) == {"x": 2, "y": [3, 5]}


def test_as_completed_yields_every_future_in_completion_order(client):
    futures = [
        client.submit(slow_identity, 1, 0.6, pure=False),
        client.submit(slow_identity, 2, 0.0, pure=False),
    ]
    order = [f.result() for f in rdask.as_completed(futures)]
    assert order == [2, 1]
    many = client.map(inc, range(50))
    seen = sorted(f.result() for f in rdask.as_completed(many))
    assert seen == list(range(1, 51))
    pairs = list(rdask.as_completed(client.map(inc, range(5)), with_results=True))
    assert sorted(r for _, r in pairs) == [1, 2, 3, 4, 5]


def touch(path):
    with open(path, "w") as f:
        f.write("ran")
    return path


def test_cancel_drops_a_queued_task_and_result_raises_cancelled(client, tmp_path):
    # Both workers busy for a while, then a task queued behind them is cancelled: it never
    # runs (a task already running finishes, as in Dask's threads).
    busy = client.map(slow_identity, [1, 2], [1.0, 1.0], pure=False)
    marker = tmp_path / "ran"
    f = client.submit(touch, str(marker), pure=False)
    assert f.cancel()
    assert f.cancelled() and f.done()
    with pytest.raises(rdask.CancelledError):
        f.result(timeout=5)
    assert client.gather(busy) == [1, 2]
    # The workers are free again and the cancelled task did not run.
    assert client.gather(client.map(slow_identity, [3, 4], [0.1, 0.1], pure=False)) == [3, 4]
    assert not marker.exists()
    # Cancelling through the client, and submitting the same pure call again, works.
    g = client.submit(inc, 77)
    client.cancel([g])
    assert g.cancelled()
    assert client.submit(inc, 77).result(timeout=30) == 78


def test_a_closure_and_a_lambda_run_on_workers(client):
    offset = 100

    def shifted(x):
        return x + offset

    assert client.submit(shifted, 1).result(timeout=30) == 101
    assert client.gather(client.map(lambda x: x * 3, [1, 2, 3])) == [3, 6, 9]
    # A lambda as a result comes back usable.
    g = client.submit(lambda: (lambda y: y - 1)).result(timeout=30)
    assert g(10) == 9


def test_pure_calls_share_a_key_and_impure_ones_do_not(client):
    a = client.submit(inc, 5)
    b = client.submit(inc, 5)
    assert a.key == b.key
    c = client.submit(inc, 5, pure=False)
    assert c.key != a.key
    assert client.submit(inc, 6).key != a.key
    k = client.submit(inc, 5, key="my-key")
    assert k.key == "my-key" and k.result(timeout=30) == 6
    assert a.result() == b.result() == c.result() == 6


def test_result_timeout(client):
    f = client.submit(slow_identity, 3, 2, pure=False)
    with pytest.raises(TimeoutError):
        f.result(timeout=0.2)
    assert f.result(timeout=30) == 3


def test_submit_refuses_what_is_not_callable(client):
    with pytest.raises(TypeError, match="not callable"):
        client.submit(42)
    with pytest.raises(TypeError, match="at least one iterable"):
        client.map(inc)


def test_a_released_future_is_recomputed_when_submitted_again(client):
    f = client.submit(inc, 1000)
    assert f.result(timeout=30) == 1001
    key = f.key
    del f
    g = client.submit(inc, 1000)
    assert g.key == key and g.result(timeout=30) == 1001


def test_printing_in_a_task_does_not_break_the_worker(client):
    def noisy(x):
        print("hello from a task", x)
        return x

    assert client.gather(client.map(noisy, range(5))) == list(range(5))


def test_builtins_and_operator_functions(client):
    assert client.submit(operator.mul, 6, 7).result(timeout=30) == 42
    assert client.submit(sorted, [3, 1, 2]).result(timeout=30) == [1, 2, 3]


def test_wait_returns_once_every_future_is_done_even_failed_ones(client):
    futures = client.map(slow_identity, [1, 2, 3], [0.1, 0.2, 0.3], pure=False)
    futures.append(client.submit(fail, 0, pure=False))
    assert rdask.wait(futures, timeout=60) == futures
    assert all(f.done() for f in futures)
    assert [f.status for f in futures] == ["finished"] * 3 + ["error"]
