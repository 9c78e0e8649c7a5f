from concurrent.futures import CancelledError as CancelledError

from ._client import (
    Client as Client,
    Future as Future,
    LocalCluster as LocalCluster,
    as_completed as as_completed,
    default_client as default_client,
    wait as wait,
)
from ._wire import RemoteError as RemoteError, RemoteTraceback as RemoteTraceback

__version__: str
