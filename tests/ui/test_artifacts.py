"""What an artifact says about where its evidence is, and the one module that writes artifacts."""

import re

import pytest

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.tasks.links import mlflow_links
from tests import source_tree

pytestmark = pytest.mark.unit


def test_on_an_mlflow_server_an_artifact_links_to_the_run_and_the_model_version_pages():
    server = MlflowConnection(tracking_uri="http://mlflow.internal:5000/")
    links = mlflow_links(server, run_id="abc123", experiment_id="7", models=[("credit/default", "3")])
    assert links == (
        "[MLflow run](http://mlflow.internal:5000/#/experiments/7/runs/abc123) · "
        "[model credit/default v3](http://mlflow.internal:5000/#/models/credit%2Fdefault/versions/3)"
    )
    # without the experiment, the run's own page (MLflow's UI finds the experiment itself)
    assert mlflow_links(server, run_id="abc123") == "[MLflow run](http://mlflow.internal:5000/#/runs/abc123)"


def test_a_registry_on_another_server_gets_the_model_links():
    split = MlflowConnection(tracking_uri="http://tracking:5000", registry_uri="https://registry.example")
    links = mlflow_links(split, run_id="r1", models=[("m", "2")])
    assert "(http://tracking:5000/#/runs/r1)" in links
    assert "(https://registry.example/#/models/m/versions/2)" in links


def test_on_a_local_store_an_artifact_names_the_ids_and_how_to_open_a_ui_once():
    local = MlflowConnection(tracking_uri="sqlite:///home/me/.mlpipe/mlflow.db")
    links = mlflow_links(local, run_id="abc123", models=[("credit", "3"), ("credit", "2")])
    assert links == (
        "MLflow run `abc123` · model `credit` v3 · model `credit` v2 · "
        "open with `mlflow ui --backend-store-uri sqlite:///home/me/.mlpipe/mlflow.db`"
    )
    assert "](" not in links  # no link a browser could not open


def test_only_the_artifacts_module_writes_prefect_artifacts():
    writers = {
        path.relative_to(source_tree.ROOT).as_posix()
        for folder in source_tree.package_dirs().values()
        for path in folder.rglob("*.py")
        if re.search(r"^\s*(from|import) prefect\.artifacts", path.read_text(), re.MULTILINE)
    }
    assert writers == {"tasks/artifacts.py"}
