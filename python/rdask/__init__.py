"""rdask: Dask's futures and arrays on the rdask Rust core.

    import rdask
    with rdask.LocalCluster(n_workers=2) as cluster, rdask.Client(cluster) as client:
        futures = client.map(lambda x: x + 1, range(10))
        print(client.gather(futures))

A Dask user's code moves with a changed import: ``Client``, ``LocalCluster``, ``submit``,
``map``, ``gather``, ``as_completed``, ``Future``; ``rdask.array`` for chunked arrays over
HDF5. Python functions run on the workers in warm interpreters; see docs/python.md.
"""

from concurrent.futures import CancelledError

from ._client import Client, Future, LocalCluster, as_completed, default_client, wait
from ._wire import RemoteError, RemoteTraceback

__version__ = "0.1.0"

__all__ = [
    "CancelledError",
    "Client",
    "Future",
    "LocalCluster",
    "RemoteError",
    "RemoteTraceback",
    "as_completed",
    "default_client",
    "wait",
]
