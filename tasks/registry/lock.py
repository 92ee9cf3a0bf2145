"""One writer of a model's aliases at a time, across every process that writes the same registry.

MLflow has no compare-and-set on aliases, so a move is read-compare-write under a lock that all
writers of that registry share:

- a registry in a local file (the embedded default, MLflow on SQLite under the workspace, or a
  file store) is only written from this machine, so the lock is an OS file lock beside it: shared
  by the flow, its Dask worker processes and `mlpipe rollback`, and released by the OS if the
  holder dies;
- any other registry (an MLflow server, a database) is written from many machines that all report
  to the workspace's Prefect server, so the lock is a Prefect global concurrency limit of one slot,
  named after the registry and the model, held with a lease that expires if the holder dies.
"""

import fcntl
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import unquote, urlparse

from mlpipe.blocks.mlflow import MlflowConnection

LEASE_SECONDS = 60
"""How long a crashed holder can block the others on a shared registry (a move takes milliseconds)."""


@contextmanager
def aliases_lock(model_name: str, tracking: MlflowConnection) -> Iterator[None]:
    """Hold the lock on `model_name`'s aliases (`champion`, `challenger`) in `tracking`'s registry."""
    registry = tracking.registry_uri or tracking.tracking_uri or ""
    local = local_registry_path(registry)
    if local is not None:
        with _file_lock(Path(f"{local}.locks") / f"{model_name}.lock"):
            yield
        return
    with _prefect_lock(f"mlpipe-champion-{hashlib.sha256(registry.encode()).hexdigest()[:12]}-{model_name}"):
        yield


def local_registry_path(registry_uri: str) -> Path | None:
    """The file or folder of a registry kept on this machine (SQLite, file store), None for a server."""
    if registry_uri.startswith("sqlite:///"):  # SQLAlchemy's form: the path follows the third slash
        return Path(registry_uri.removeprefix("sqlite:///").split("?")[0])
    parsed = urlparse(registry_uri)
    if parsed.scheme in ("", "file") and registry_uri != "databricks":
        return Path(unquote(parsed.path))
    return None


@contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one per open file: threads of one process exclude each other too
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextmanager
def _prefect_lock(name: str) -> Iterator[None]:
    from prefect.concurrency.sync import concurrency

    _make_limit(name)
    with concurrency(name, occupy=1, strict=True, lease_duration=LEASE_SECONDS):
        yield


def _make_limit(name: str) -> None:
    """Create the one-slot limit `name` unless an earlier move made it: it is looked up first.

    Asking to create a limit that exists is refused by the server, and on SQLite the refused write
    held `prefect server`'s database for a minute against every other write made at the time.
    """
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            with suppress(ObjectAlreadyExists):  # another writer made it just now
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=name, limit=1))
