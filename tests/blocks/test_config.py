"""Blocks: local defaults, environment overrides, config files, the workspace's identity."""

import os
import re
from pathlib import Path

import pytest

from mlpipe.blocks import DaskCluster, Datastore, MlflowConnection, WorkspaceConfig
from mlpipe.blocks.config import load_config_file
from mlpipe.errors import ConfigError

pytestmark = pytest.mark.unit


def test_defaults_live_under_mlpipe_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "home"))
    resolved = WorkspaceConfig().resolve()
    assert resolved.mlflow.tracking_uri == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    assert resolved.mlflow.registry_uri == resolved.mlflow.tracking_uri
    assert resolved.mlflow.artifact_location == (tmp_path / "home" / "artifacts").as_uri()
    assert resolved.datastore.url == str(tmp_path / "home" / "datastore")
    assert resolved.cluster.address is None


def test_standard_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://127.0.0.1:5001")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:8786")
    resolved = WorkspaceConfig().resolve()
    assert resolved.mlflow.tracking_uri == "http://127.0.0.1:5000"
    assert resolved.mlflow.registry_uri == "http://127.0.0.1:5001"
    assert resolved.mlflow.artifact_location is None  # the server decides
    assert resolved.cluster.address == "tcp://127.0.0.1:8786"
    explicit = MlflowConnection(tracking_uri="sqlite:///x.db").resolve()
    assert explicit.tracking_uri == "sqlite:///x.db"


def test_cluster_settings_become_local_cluster_arguments():
    cluster = DaskCluster(n_workers=2, threads_per_worker=1, adaptive_maximum=4)
    assert cluster.local_cluster_kwargs() == {
        "processes": False,
        "dashboard_address": "127.0.0.1:8787",
        "worker_dashboard_address": "127.0.0.1:0",
        "n_workers": 2,
        "threads_per_worker": 1,
    }
    assert cluster.adapt_kwargs() == {"maximum": 4}


def test_config_file_errors_name_the_file_and_field(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("cluster:\n  n_workers: zero\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: field 'cluster\.n_workers'"):
        WorkspaceConfig.from_mapping(load_config_file(path), str(path))
    path.write_text("clusters: {}\n")
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['clusters'\]"):
        WorkspaceConfig.from_mapping(load_config_file(path), str(path))
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(tmp_path / "missing.yaml")


def test_mlflow_session_puts_back_exactly_what_was_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    connection = MlflowConnection(tracking_uri=f"sqlite:///{tmp_path / 'a.db'}").resolve()
    with connection.session():
        assert mlflow.get_tracking_uri() == connection.tracking_uri
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "home"))
    assert MlflowConnection().resolve().tracking_uri == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"


def test_a_recreated_workspace_gets_a_new_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import shutil

    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "home"))
    first = Datastore().resolve()
    assert first.workspace and Datastore().resolve() == first  # stable while the workspace lives
    shutil.rmtree(tmp_path / "home")
    assert Datastore().resolve().workspace != first.workspace  # so no cached result points into the old one
    elsewhere = Datastore(url=str(tmp_path / "elsewhere")).resolve()
    assert elsewhere.workspace == Datastore().resolve().workspace  # any datastore: the workspace is in every key


@pytest.mark.parametrize(
    ("text", "section", "message"),
    [
        ("gate: {treshold: 0.9}\n", None, "unknown field 'gate.treshold'"),  # would have disabled the gate
        ("mlflow: {trackinguri: http://127.0.0.1:5000}\n", None, "unknown field 'mlflow.trackinguri'"),
        ("cluster: {n_worker: 4}\n", None, "unknown field 'cluster.n_worker'"),
        ("drift: {drift_shar: 0.3}\n", None, "unknown field 'drift.drift_shar'"),
        ("training: {data: x.csv, target: y, name: m, excldue: [id]}\n", "training", "unknown field 'excldue'"),
        (
            "training: {data: x.csv, target: y, name: m, model: {famly: linear}}\n",
            "training",
            "unknown field 'model.famly'",
        ),
        ("training: {data: x.csv, target: y, name: m, split: {seeed: 3}}\n", "training", "unknown field 'split.seeed'"),
    ],
)
def test_every_misspelt_key_in_a_config_file_is_an_error_naming_it(
    tmp_path: Path, text: str, section: str | None, message: str
):
    from mlpipe.blocks.config import run_config
    from mlpipe.errors import validated
    from mlpipe.flows.training import TrainingParams

    path = tmp_path / "project.yaml"
    path.write_text(text)
    with pytest.raises(
        ConfigError, match=rf"project\.yaml: {re.escape(message)}|project\.yaml: unknown field {re.escape(message)}"
    ):
        settings = run_config(path, section)
        validated(TrainingParams, settings.params, settings.source)
