"""The drift check against the champion's training data: verdicts, evidence, and the events it emits."""

import json
from pathlib import Path

import pytest

from mlpipe.blocks import WorkspaceConfig
from mlpipe.demo_data import credit_default
from mlpipe.errors import DataError
from mlpipe.flows.drift import DriftParams, drift_check
from mlpipe.tasks.events import DRIFT_CHECKED, DRIFT_DETECTED
from tests.pipeline import model_events, run_cli, run_training

pytestmark = pytest.mark.flow

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
    assert model_events(MODEL, DRIFT_CHECKED, champion)
    assert not model_events(MODEL, DRIFT_DETECTED, champion, wait=2)  # this module's first check: nothing to retrain on


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

    found = model_events(MODEL, DRIFT_DETECTED, champion)
    assert found, "no mlpipe.drift.detected event reached the Prefect API"
    event = found[0]
    assert event.resource["mlpipe.model.name"] == MODEL
    assert "income" in event.payload["drifted_features"]
    assert event.payload["drift_share"] == summary.data.drift_share
    assert summary.mlflow_run_id in event.payload["report"]


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


def test_partitions_on_dask_give_the_single_file_result_and_bad_cells_are_reported(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    drifted = credit_default(rows=6_000, seed=53, drift=1.0)
    whole = tmp_path / "whole.parquet"
    drifted.to_parquet(whole, index=False)
    parts = tmp_path / "parts"
    parts.mkdir()
    for index, start in enumerate(range(0, 6_000, 2_000)):  # three files of two row groups each
        drifted.iloc[start : start + 2_000].to_parquet(
            parts / f"part-{index}.parquet", index=False, row_group_size=1_000
        )
    one = drift_check(DriftParams(model=MODEL, current=str(whole)), workspace)
    many = drift_check(DriftParams(model=MODEL, current=str(parts)), workspace)
    assert many.current_rows == one.current_rows == 6_000 and len(many.current) == 3
    for left, right in zip(one.data.features, many.data.features, strict=True):
        assert (left.feature, left.test, left.drifted) == (right.feature, right.test, right.drifted)
        assert left.statistic == pytest.approx(right.statistic)
    assert many.prediction.statistic == pytest.approx(one.prediction.statistic)

    text = drifted.head(1_500).astype(str)
    text.loc[[3, 9], "income"] = "n/a"  # two rows the model cannot take
    csv = tmp_path / "with-bad-cells.csv"
    text.to_csv(csv, index=False)
    summary = drift_check(DriftParams(model=MODEL, current=str(csv)), workspace)
    assert summary.current_rows == 1_498
    unparseable = [q for q in summary.quality if q.signal == "unparseable"]
    assert unparseable and unparseable[0].detail.startswith("2 rows left out")


def test_current_window_comes_from_the_run_time_and_a_missing_column_is_named(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    import datetime as dt

    yesterday = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    night = tmp_path / f"{yesterday:%Y-%m-%d}"
    night.mkdir()
    credit_default(rows=1_200, seed=54).to_parquet(night / "data.parquet", index=False)
    params = DriftParams(model=MODEL, current=str(tmp_path / "{window_start:%Y-%m-%d}"), window_days=1)
    summary = drift_check(params, workspace)
    assert len(summary.current) == 1 and summary.current[0].endswith(f"{yesterday:%Y-%m-%d}/data.parquet")
    assert summary.current_rows == 1_200

    broken = tmp_path / "no-income.parquet"
    credit_default(rows=500, seed=55).drop(columns=["income"]).to_parquet(broken, index=False)
    with pytest.raises(DataError, match=r"income.*no-income\.parquet|no-income\.parquet.*income"):
        drift_check(DriftParams(model=MODEL, current=str(broken)), workspace)
