"""The drift check against the champion's training data: verdicts, evidence, and the events it emits."""

import json
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from mlpipe.blocks import DriftPolicy, WorkspaceConfig
from mlpipe.demo_data import credit_default
from mlpipe.errors import DataError
from mlpipe.flows.drift import DriftParams, drift_check
from mlpipe.tasks.events import DRIFT_CHECKED, DRIFT_DETECTED
from mlpipe.tasks.model.importance import load_importance
from mlpipe.tasks.monitoring.drift_check import DriftSummary
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
    env_workspace = {"MLFLOW_TRACKING_URI": workspace.resolve().mlflow.tracking_uri or ""}
    result = run_cli(
        "drift", "--model", MODEL, "--current", str(current), "--json", cwd=tmp_path, extra_env=env_workspace
    )
    assert result.returncode == 0, result.stderr[-3000:]
    printed = json.loads(result.stdout)
    assert printed["drifted"] is False and printed["model"]["name"] == MODEL
    assert printed["data"]["rules"] == [] and printed["data"]["weighting"].startswith("permutation importance")

    # NAME@ALIAS, as `mlpipe score` takes it: the first training made its version the challenger too
    reference = f"{MODEL}@challenger"
    table = run_cli("drift", "--model", reference, "--current", str(current), cwd=tmp_path, extra_env=env_workspace)
    assert table.returncode == 0, table.stderr[-3000:]
    said = " ".join(table.stdout.split())
    assert f"drift: {MODEL} v{champion}" in said
    assert "no dataset drift (0 of 15 features drifted, weighted share 0.00" in said
    assert "weights: permutation importance (log loss" in said


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


def test_captured_traffic_gives_the_verdict_of_the_same_rows_as_a_file(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    import mlflow

    from mlpipe.tasks.monitoring.capture import CaptureWriter
    from mlpipe.tasks.registry.model_ref import resolve_model

    tracking = workspace.resolve().mlflow
    model = resolve_model(f"{MODEL}@champion", tracking)
    with tracking.session():
        predictor = mlflow.pyfunc.load_model(model.uri)
    for drift in (0.0, 1.0):
        rows = credit_default(rows=3_000, seed=56, drift=drift)[[column.name for column in model.inputs]]
        captures = tmp_path / f"captures-{drift}"
        writer = CaptureWriter(str(captures), sample_rate=1.0, batch_rows=1_000)
        for start in range(0, len(rows), 250):  # requests as the endpoint records them, answered by two versions
            inputs = rows.iloc[start : start + 250]
            writer.record(MODEL, champion if start < 2_000 else "0", inputs, predictor.predict(inputs))
        writer.close(timeout=30)
        assert writer.counters.written == 3_000 and len({p.parent for p in captures.rglob("part-*")}) == 2
        as_file = tmp_path / f"same-rows-{drift}.parquet"
        rows.to_parquet(as_file, index=False)

        captured = drift_check(DriftParams(model=MODEL, current=str(captures)), workspace)
        given = drift_check(DriftParams(model=MODEL, current=str(as_file)), workspace)
        assert captured.drifted is given.drifted is bool(drift), (captured.data, given.data)
        assert captured.current_rows == given.current_rows == 3_000
        assert captured.data.drifted_features == given.data.drifted_features
        for left, right in zip(captured.data.features, given.data.features, strict=True):
            assert left.statistic == pytest.approx(right.statistic), left.feature
        assert captured.prediction.statistic == pytest.approx(given.prediction.statistic)


def shifted(frame: pd.DataFrame, columns: list[str], stds: float = 1.5) -> pd.DataFrame:
    """The frame with `columns` moved up by `stds` of their own standard deviation."""
    return frame.assign(**{name: frame[name] + stds * frame[name].std() for name in columns})


def event_of(summary: DriftSummary, name: str, version: str) -> Any:
    """The event this check emitted (earlier checks of the module emitted others for the same version)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for event in model_events(MODEL, name, version, wait=0):
            if event.payload.get("mlflow_run_id") == summary.mlflow_run_id:
                return event
        time.sleep(0.5)
    raise AssertionError(f"no {name} event for drift run {summary.mlflow_run_id}")


def test_features_weigh_by_the_importance_stored_at_training(workspace: WorkspaceConfig, champion: str, tmp_path: Path):
    tracking = workspace.resolve().mlflow
    run_id = tracking.client().get_model_version(MODEL, champion).run_id
    importance = load_importance(run_id, tracking)
    assert importance is not None and importance.rows > 0, "training stored no feature importance"
    fresh = credit_default(rows=3_000, seed=56)
    total = sum(max(value, 0.0) for value in importance.importances.values())
    weight = {name: max(value, 0.0) / total for name, value in importance.importances.items()}
    numbers = sorted((n for n in weight if pd.api.types.is_float_dtype(fresh[n])), key=weight.__getitem__, reverse=True)
    important = [name for index, name in enumerate(numbers) if sum(weight[n] for n in numbers[:index]) < 0.6]
    unimportant = numbers[-4:]
    assert len(important) <= 4 and not set(important) & set(unimportant)  # at most 4 of 15 features by count
    assert sum(weight[n] for n in unimportant) < 0.2

    current = tmp_path / "important.parquet"
    shifted(fresh, important).to_parquet(current, index=False)
    summary = drift_check(DriftParams(model=MODEL, current=str(current)), workspace)
    assert set(summary.data.drifted_features) == set(important)
    assert summary.data.drift_share < 0.5 <= summary.data.weighted_share
    assert summary.drifted and "weighted_share" in summary.data.rules
    assert summary.data.weighting.startswith("permutation importance (log loss")
    weights = {f.feature: f.weight for f in summary.data.features}
    assert sum(weights.values()) == pytest.approx(1.0) and weights[important[0]] > weights[unimportant[0]]
    detected = event_of(summary, DRIFT_DETECTED, champion)
    assert "weighted_share" in detected.payload["rules"]
    assert set(detected.payload["contributions"]) == set(important)
    report = tracking.client().download_artifacts(summary.mlflow_run_id, "drift/features.json", str(tmp_path))
    logged = json.loads(Path(report).read_text())
    assert logged["rules"] == summary.data.rules and logged["weighting"] == summary.data.weighting
    assert {f["feature"]: f["contribution"] for f in logged["features"]} == {
        name: weights[name] if name in important else 0.0 for name in weights
    }
    assert load_importance(summary.mlflow_run_id, tracking) is None  # a run without one: equal weights

    current = tmp_path / "unimportant.parquet"
    shifted(fresh, unimportant).to_parquet(current, index=False)
    summary = drift_check(DriftParams(model=MODEL, current=str(current)), workspace)
    assert set(summary.data.drifted_features) == set(unimportant) and summary.data.weighted_share < 0.2
    # Whether the scores moved is the prediction rule's to say (income's spread moves them a little).
    assert summary.data.rules == (["prediction"] if summary.prediction.drifted else [])
    quiet = workspace.model_copy(update={"drift": DriftPolicy(prediction_drift=False)})
    summary = drift_check(DriftParams(model=MODEL, current=str(current)), quiet)
    assert not summary.drifted and summary.data.rules == []
    assert event_of(summary, DRIFT_CHECKED, champion).payload["rules"] == []
