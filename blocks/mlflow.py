"""MLflow connection: tracking and registry URIs and the experiment runs go to."""

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from prefect.blocks.core import Block
from pydantic import Field

from mlpipe.blocks.secrets import UriWithoutPassword, from_environment, password
from mlpipe.redaction import user_of, with_password
from mlpipe.runtime import quiet_mlflow
from mlpipe.validation import FORBID_UNKNOWN
from mlpipe.workspace import workspace_home

if TYPE_CHECKING:
    from mlflow import MlflowClient

_SESSION_LOCK = threading.RLock()
_URI_VARIABLES = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
PASSWORD_VARIABLE = "MLFLOW_TRACKING_PASSWORD"
"""MLflow's own variable for a server's password; mlpipe also puts it in a database URI when connecting."""


class MlflowConnection(Block):
    """Where runs are tracked and models registered.

    Unset fields fall back to `MLFLOW_TRACKING_URI` / `MLFLOW_REGISTRY_URI`, then to SQLite and
    an artifact directory under the workspace (`MLPIPE_HOME`), so nothing needs a server.

    The password of a server or database never sits in a URI: it comes from the Prefect `Secret`
    block named by `secret_name`, else from `MLFLOW_TRACKING_PASSWORD`, on the machine that
    connects. An HTTP server gets it as basic auth (user from the URI or `MLFLOW_TRACKING_USERNAME`),
    a database in the user-info of the URI handed to its driver, never shown.
    """

    _block_type_name = "mlpipe MLflow Connection"
    model_config = FORBID_UNKNOWN

    tracking_uri: UriWithoutPassword = Field(default=None, description="default: $MLFLOW_TRACKING_URI or SQLite")
    registry_uri: UriWithoutPassword = Field(default=None, description="default: $MLFLOW_REGISTRY_URI or tracking")
    secret_name: str | None = Field(
        default=None, description="Prefect Secret block with the server's password; default: $MLFLOW_TRACKING_PASSWORD"
    )
    experiment_name: str | None = Field(default=None, description="experiment for runs; default: the model name")
    artifact_location: str | None = Field(
        default=None, description="artifact root for new experiments; default: under MLPIPE_HOME when local"
    )

    def resolve(self) -> "MlflowConnection":
        """A copy with every URI filled in, so workers need no environment of their own."""
        tracking = self.tracking_uri or from_environment("MLFLOW_TRACKING_URI")
        artifacts = self.artifact_location
        if not tracking:
            home = workspace_home()
            tracking = f"sqlite:///{home / 'mlflow.db'}"
            artifacts = artifacts or (home / "artifacts").as_uri()
        registry = self.registry_uri or from_environment("MLFLOW_REGISTRY_URI") or tracking
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

        quiet_mlflow()
        tracking, registry = self._connect_uris()
        with _SESSION_LOCK:
            saved_env = {name: os.environ.get(name) for name in _URI_VARIABLES}
            saved_tracking, saved_registry = tracking_utils._tracking_uri, registry_utils._registry_uri
            mlflow.set_tracking_uri(tracking)
            mlflow.set_registry_uri(registry)
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

        quiet_mlflow()
        tracking, registry = self._connect_uris()
        return MlflowClient(tracking_uri=tracking, registry_uri=registry)

    def _connect_uris(self) -> tuple[str, str]:
        """The tracking and registry URIs MLflow connects with, credentials applied (see the class docstring)."""
        if self.tracking_uri is None or self.registry_uri is None:
            raise ValueError("MlflowConnection.resolve() must be called before use")
        secret = password(self.secret_name, PASSWORD_VARIABLE)
        return _with_credentials(self.tracking_uri, secret), _with_credentials(self.registry_uri, secret)

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


def _with_credentials(uri: str, secret: str | None) -> str:
    """`uri` for MLflow to connect with: HTTP servers read the password from MLflow's variable, drivers from the URI."""
    if secret is None:
        return uri
    if uri.startswith(("http://", "https://")):
        user = user_of(uri)
        if user:
            os.environ.setdefault("MLFLOW_TRACKING_USERNAME", user)
        os.environ[PASSWORD_VARIABLE] = secret  # read by MLflow on each request; never printed
        return uri
    return with_password(uri, None, secret)
