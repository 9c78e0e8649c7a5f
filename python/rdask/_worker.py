"""``rdask-worker``: a worker process of an rdask cluster in this Python environment.

LocalCluster starts these (``rdask-worker worker ADDRESS --no-nanny ...``): the worker is the
Rust one (``rdask._rdask.worker_main``, the flags of ``rdask-jobqueue worker``), with the
array kernels and the ``python.call`` interpreter pool.
"""

import sys

from . import _rdask


def main():
    sys.exit(_rdask.worker_main(sys.argv))


if __name__ == "__main__":
    main()
