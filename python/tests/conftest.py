import os

import pytest

import rdask


@pytest.fixture(scope="session")
def cluster():
    with rdask.LocalCluster(n_workers=2, threads_per_worker=1, memory_limit="1GiB") as c:
        yield c


@pytest.fixture(scope="session")
def client(cluster):
    with rdask.Client(cluster) as c:
        yield c


def rdask_binary():
    """The rdask-jobqueue binary (for `up`), from $RDASK_BIN (tests/run.sh sets it)."""
    path = os.environ.get("RDASK_BIN")
    if not path:
        pytest.skip("RDASK_BIN is not set (tests/run.sh sets it to target/debug/rdask-jobqueue)")
    return path


def pytest_collection_modifyitems(items):
    # The test modules are importable here only through pytest's sys.path: their functions
    # go to the workers by value (as a user does for a script's own module).
    import sys

    import cloudpickle

    for name in {item.module.__name__ for item in items}:
        cloudpickle.register_pickle_by_value(sys.modules[name])
