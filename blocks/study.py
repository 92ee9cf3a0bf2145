"""Study storage: where optuna keeps a sweep's trials, reachable from every Dask worker."""

import os
import threading
import warnings
from typing import TYPE_CHECKING

from prefect.blocks.core import Block
from pydantic import Field

from mlpipe.blocks.secrets import UriWithoutPassword, from_environment, password
from mlpipe.redaction import with_password
from mlpipe.validation import FORBID_UNKNOWN
from mlpipe.workspace import workspace_home

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

_OPEN: dict[str, "BaseStorage"] = {}
_OPEN_LOCK = threading.Lock()
PASSWORD_VARIABLE = "MLPIPE_STUDY_STORAGE_PASSWORD"


class StudyStorage(Block):
    """An optuna storage URL; every trial on every worker reads and writes the study through it.

    * a file path (the default: `<MLPIPE_HOME>/optuna.journal`): optuna's journal on a file,
      for workers that share a filesystem (a LocalCluster, an NFS mount);
    * `redis://host:6379/0`: the same journal in Redis, for a cluster whose workers share nothing;
    * `postgresql://…`, `mysql://…`, `sqlite:///…`: optuna's relational storage.

    The study outlives the process that runs it, which is what lets a killed sweep resume.
    A Redis or database password never sits in the URL: it comes from the Prefect `Secret` block
    named by `secret_name`, else from `MLPIPE_STUDY_STORAGE_PASSWORD`, when the storage is opened.
    """

    _block_type_name = "mlpipe Study Storage"
    model_config = FORBID_UNKNOWN

    url: UriWithoutPassword = Field(default=None, description="default: $MLPIPE_STUDY_STORAGE or a journal file")
    secret_name: str | None = Field(
        default=None, description="Prefect Secret block with the password; default: $MLPIPE_STUDY_STORAGE_PASSWORD"
    )
    lease_seconds: float = Field(
        default=60.0,
        ge=1.0,
        description="a sweep's hold on its study lapses this long after its last heartbeat (see tasks/sweep/lease)",
    )

    def resolve(self) -> "StudyStorage":
        """A copy with the default location filled in (absolute, so workers agree)."""
        url = self.url or from_environment("MLPIPE_STUDY_STORAGE") or str(workspace_home() / "optuna.journal")
        return self.model_copy(update={"url": url})

    def open(self) -> "BaseStorage":
        """The storage, opened once per process and shared by its threads (optuna storages are thread-safe)."""
        if self.url is None:
            raise ValueError("StudyStorage.resolve() must be called before use")
        with _OPEN_LOCK:
            if self.url not in _OPEN:
                secret = password(self.secret_name, PASSWORD_VARIABLE) if "://" in self.url else None
                _OPEN[self.url] = _connect(self.url if secret is None else with_password(self.url, None, secret))
            return _OPEN[self.url]


def _connect(url: str) -> "BaseStorage":
    from optuna.exceptions import ExperimentalWarning
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

    if url.startswith(("redis://", "rediss://", "unix://")):
        with warnings.catch_warnings():  # optuna's journal on Redis is experimental: mlpipe's choice, not the user's
            warnings.simplefilter("ignore", ExperimentalWarning)
            return JournalStorage(JournalRedisBackend(url))
    if "://" in url:
        return RDBStorage(url, engine_kwargs=_engine_kwargs(url))
    os.makedirs(os.path.dirname(os.path.abspath(url)), exist_ok=True)
    return JournalStorage(JournalFileBackend(url))


def _engine_kwargs(url: str) -> dict[str, object]:
    # Concurrent trials on one SQLite file wait for each other's writes instead of failing.
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
