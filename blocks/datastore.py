"""Datastore: where datasets and snapshots live, as an fsspec URL."""

from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.core import url_to_fs
from prefect.blocks.core import Block
from pydantic import Field

from mlpipe.blocks.secrets import UriWithoutPassword, secret_value
from mlpipe.errors import ConfigError
from mlpipe.validation import FORBID_UNKNOWN
from mlpipe.workspace import workspace_home, workspace_id

if TYPE_CHECKING:
    from prefect.filesystems import WritableFileSystem

RESULTS_FOLDER = "prefect-results"
"""Where, under the datastore, a remote cluster's cached task results are kept."""


class Datastore(Block):
    """An fsspec location (local path, s3://, abfs://, gs://…) for immutable dataset snapshots.

    Credentials never sit in the block: `secret_name` names a Prefect `Secret` block whose
    value is a JSON object of fsspec storage options, read when the filesystem is opened.
    """

    _block_type_name = "mlpipe Datastore"
    model_config = FORBID_UNKNOWN

    url: UriWithoutPassword = Field(default=None, description="fsspec URL; default: <MLPIPE_HOME>/datastore")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="non-secret fsspec options")
    secret_name: str | None = Field(default=None, description="Prefect Secret block with JSON storage options")
    workspace: str | None = Field(default=None, description="the local workspace's id, set by resolve()")

    def resolve(self) -> "Datastore":
        """A copy with the default location (absolute, so workers agree) and the workspace's id filled in.

        The id is part of every cache key that takes the datastore, whatever its location: results
        cached by a workspace that was deleted and recreated are never served to the new one.
        """
        return self.model_copy(
            update={
                "url": self.url or str(workspace_home() / "datastore"),
                "workspace": self.workspace or workspace_id(),
            }
        )

    def options(self) -> dict[str, Any]:
        """Storage options, with the secret ones merged in when a secret is named."""
        if not self.secret_name:
            return dict(self.storage_options)
        extra = secret_value(self.secret_name)
        if not isinstance(extra, dict):
            raise ConfigError(f"Secret block {self.secret_name!r}: expected a JSON object of storage options")
        return {**self.storage_options, **extra}

    def filesystem(self) -> tuple[fsspec.AbstractFileSystem, str]:
        """The filesystem and the root path inside it."""
        if self.url is None:
            raise ValueError("Datastore.resolve() must be called before use")
        fs, root = url_to_fs(self.url, **self.options())
        return fs, root.rstrip("/")

    def result_storage(self) -> "WritableFileSystem":
        """Prefect result storage under this datastore (`<url>/prefect-results`), for flows on a remote cluster.

        Prefect keeps a task's cached result where the flow process says, even when a worker on
        another host runs the task; under the datastore, which every worker already reads and
        writes, each worker and the next run find it. The storage options (the Secret's included)
        go with the run's context to its workers, in memory only, as Prefect's own storage does.
        """
        from fsspec.implementations.local import LocalFileSystem as LocalFiles
        from prefect.filesystems import LocalFileSystem, RemoteFileSystem

        fs, root = self.filesystem()
        if isinstance(fs, LocalFiles):
            return LocalFileSystem(basepath=f"{root}/{RESULTS_FOLDER}")
        assert self.url is not None  # filesystem() checked it
        return RemoteFileSystem(basepath=f"{self.url.rstrip('/')}/{RESULTS_FOLDER}", settings=self.options())
