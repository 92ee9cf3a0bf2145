"""The Dask cluster a step runs on, for steps that spread their own work over it a partition at a time."""

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distributed import Client


@contextmanager
def cluster_client() -> Iterator["Client"]:
    """A client of the cluster this runs on: from inside a task on a worker (its thread seceded while it waits), or
    the process's own client.

    Raises:
        ValueError: no cluster to run on.
    """
    from distributed import get_client, get_worker, worker_client

    try:
        get_worker()
    except ValueError:
        yield get_client()
        return
    with worker_client() as client:
        yield client
