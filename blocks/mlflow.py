"""MLflow connection: tracking and registry URIs and the experiment runs go to."""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prefect.blocks.core import Block
from pydantic import Field

from mlpipe.validation import FORBID_UNKNOWN
from mlpipe.workspace import workspace_home

if TYPE_CHECKING:
    from mlflow import MlflowClient

_SESSION_LOCK = threading.RLock()
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


class MlflowConnection(Block):
    """Where runs are tracked and models registered.

    Unset fields fall back to `MLFLOW_TRACKING_URI` / `MLFLOW_REGISTRY_URI`, then to SQLite and
    an artifact directory under the workspace (`MLPIPE_HOME`), so nothing needs a server.
    """

    _block_type_name = "mlpipe MLflow Connection"
    model_config = FORBID_UNKNOWN

    tracking_uri: str | None = Field(default=None, description="default: $MLFLOW_TRACKING_URI or SQLite")
    registry_uri: str | None = Field(default=None, description="default: $MLFLOW_REGISTRY_URI or tracking")
    experiment_name: str | None = Field(default=None, description="experiment for runs; default: the model name")
    artifact_location: str | None = Field(
        default=None, description="artifact root for new experiments; default: under MLPIPE_HOME when local"
    )

    def resolve(self) -> "MlflowConnection":
        """A copy with every URI filled in, so workers need no environment of their own."""
        tracking = self.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        artifacts = self.artifact_location
        if not tracking:
            home = workspace_home()
            tracking = f"sqlite:///{home / 'mlflow.db'}"
            artifacts = artifacts or (home / "artifacts").as_uri()
        registry = self.registry_uri or os.environ.get("MLFLOW_REGISTRY_URI") or tracking
        return self.model_copy(
            update={"tracking_uri": tracking, "registry_uri": registry, "artifact_location": artifacts}
        )

    @contextmanager
    def session(self) -> Iterator[None]:
        """Point MLflow's process-wide fluent API at this connection, then put back exactly what was there.

        MLflow keeps the URIs in module globals *and* exports them as environment variables, so a
        plain set/restore would leak a resolved default (a cwd-relative SQLite file) into the next
        `resolve()`. Tasks on a threaded Dask worker share the process, hence the lock.
        """
        import mlflow
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        if self.tracking_uri is None or self.registry_uri is None:
            raise ValueError("MlflowConnection.resolve() must be called before use")
        with _SESSION_LOCK:
            saved_env = {name: os.environ.get(name) for name in _URI_VARIABLES}
            saved_tracking, saved_registry = tracking_utils._tracking_uri, registry_utils._registry_uri
            mlflow.set_tracking_uri(self.tracking_uri)
            mlflow.set_registry_uri(self.registry_uri)
            try:
                yield
            finally:
                mlflow.set_tracking_uri(saved_tracking)  # type: ignore[arg-type]  # None unsets it
                registry_utils._registry_uri = saved_registry
                for name, value in saved_env.items():
                    if value is None:
                        os.environ.pop(name, None)
                    else:
                        os.environ[name] = value

    def client(self) -> "MlflowClient":
        """A client bound to this connection (no global state)."""
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri, registry_uri=self.registry_uri)

    def experiment_id(self, model_name: str) -> str:
        """The experiment's id (named after the model unless configured), created on first use."""
        from mlflow.exceptions import MlflowException

        name = self.experiment_name or model_name
        client = self.client()
        found = client.get_experiment_by_name(name)
        if found is not None:
            return found.experiment_id
        try:
            return client.create_experiment(name, artifact_location=self.artifact_location)
        except MlflowException:  # created concurrently by another worker
            found = client.get_experiment_by_name(name)
            if found is None:
                raise
            return found.experiment_id
