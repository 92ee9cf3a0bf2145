"""The drift check against the champion's training data: verdicts, evidence, and the events it emits."""

import json
from pathlib import Path

import pytest

from blocks import WorkspaceConfig
from flows.drift import CHECKED, DETECTED, DriftParams, drift_check
from mlpipe.demo_data import credit_default
from tests.pipeline import model_events, run_cli, run_training

MODEL = "drift-demo"


@pytest.fixture(scope="module")
def champion(workspace: WorkspaceConfig, demo_csv: Path) -> str:
    outcome = run_training(workspace, data=str(demo_csv), target="default", name=MODEL, exclude=["application_id"])
    assert outcome.error is None, outcome.error
    return outcome.summary.version


def test_fresh_data_from_the_same_distribution_does_not_drift(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    current = tmp_path / "fresh.parquet"
    credit_default(rows=3_000, seed=50).to_parquet(current, index=False)
    summary = drift_check(DriftParams(model=MODEL, current=str(current)), workspace)
    assert not summary.drifted and summary.data.drifted_features == [], [f for f in summary.data.features if f.drifted]
    assert summary.model.version == champion and summary.reference.endswith(".parquet")
    assert {r.test for r in summary.data.features} <= {"wasserstein", "jensen_shannon"}  # thousands of rows
    assert not summary.prediction.drifted
    assert model_events(MODEL, CHECKED, champion)
    assert not model_events(MODEL, DETECTED, champion, wait=2)  # this module's first check: nothing to retrain on


def test_drifted_data_is_detected_reported_and_announced(workspace: WorkspaceConfig, champion: str, tmp_path: Path):
    current = tmp_path / "drifted.parquet"
    credit_default(rows=3_000, seed=51, drift=1.0).to_parquet(current, index=False)
    summary = drift_check(DriftParams(model=MODEL, current=str(current)), workspace)
    assert summary.drifted
    assert {"income", "credit_score"} <= set(summary.data.drifted_features)
    client = workspace.resolve().mlflow.client()
    run = client.get_run(summary.mlflow_run_id)
    assert run.data.metrics["dataset_drifted"] == 1.0 and run.data.tags["mlpipe.model_version"] == champion
    artifacts = {a.path for a in client.list_artifacts(summary.mlflow_run_id, "drift")}
    assert {"drift/histograms.png", "drift/features.json"} <= artifacts

    found = model_events(MODEL, DETECTED, champion)
    assert found, "no mlpipe.drift.detected event reached the Prefect API"
    event = found[0]
    assert event.resource["mlpipe.model.name"] == MODEL
    assert "income" in event.payload["drifted_features"]


def test_drift_cli_prints_json(workspace: WorkspaceConfig, champion: str, tmp_path: Path):
    current = tmp_path / "fresh.csv"
    credit_default(rows=2_000, seed=52).to_csv(current, index=False)
    env_workspace = workspace.resolve().mlflow.tracking_uri
    result = run_cli(
        "drift",
        "--model",
        MODEL,
        "--current",
        str(current),
        "--json",
        cwd=tmp_path,
        extra_env={"MLFLOW_TRACKING_URI": env_workspace or ""},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout)
    assert printed["drifted"] is False and printed["model"]["name"] == MODEL
