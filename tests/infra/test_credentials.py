"""Credentials of a workspace beyond loopback can come from Prefect Secret blocks, and reach its own clients."""

from pathlib import Path

import pytest

from mlpipe.infra.auth import Credentials, resolve_credentials
from mlpipe.infra.components import Options, Ports, components

pytestmark = pytest.mark.flow
PORTS = Ports(prefect=4200, mlflow=5000, dask=8786, dashboard=8787)


def test_credentials_from_secret_blocks_replace_the_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from prefect.blocks.system import Secret

    Secret(value="ops:from-a-block").save("up-test-prefect-auth", overwrite=True)
    Secret(value="a-password-from-a-block").save("up-test-mlflow-password", overwrite=True)
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "ops:from-the-environment")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "ops")
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    credentials = resolve_credentials("--auth", "up-test-prefect-auth", "up-test-mlflow-password")
    assert credentials == Credentials("ops:from-a-block", "ops", "a-password-from-a-block")
    planned = {c.name: c for c in components(Options(auth=True), PORTS, tmp_path, credentials, tmp_path)}
    assert planned["prefect"].environment["PREFECT_SERVER_API_AUTH_STRING"] == "ops:from-a-block"
    assert planned["mlflow"].environment["MLFLOW_AUTH_ADMIN_PASSWORD"] == "a-password-from-a-block"
    for client in ("dask-workers", "worker"):  # the workspace's own clients get what its servers require
        assert planned[client].environment["PREFECT_API_AUTH_STRING"] == "ops:from-a-block"
        assert planned[client].environment["MLFLOW_TRACKING_PASSWORD"] == "a-password-from-a-block"
