"""Performance on late labels: predictions joined with labels by id, scored, and degraded runs announced."""

import datetime as dt
import json
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from sklearn.metrics import accuracy_score

from mlpipe.blocks import WorkspaceConfig
from mlpipe.demo_data import credit_default
from mlpipe.errors import DataError
from mlpipe.flows.performance import PerformanceParams, performance_check
from mlpipe.flows.scoring import ScoringParams, batch_scoring
from mlpipe.tasks.events import PERFORMANCE_DEGRADED
from tests.pipeline import model_events, run_training

pytestmark = pytest.mark.flow

MODEL = "performance-demo"


@pytest.fixture(scope="module")
def scored(workspace: WorkspaceConfig, demo_csv: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    """Fresh applications scored by the champion, and their true labels."""
    outcome = run_training(workspace, data=str(demo_csv), target="default", name=MODEL, exclude=["application_id"])
    assert outcome.error is None, outcome.error
    folder = tmp_path_factory.mktemp("performance")
    fresh = credit_default(rows=2_000, seed=60)
    fresh.drop(columns=["default"]).to_parquet(folder / "applications.parquet", index=False)
    fresh[["application_id", "default"]].to_parquet(folder / "labels.parquet", index=False)
    batch_scoring(
        ScoringParams(
            model=f"{MODEL}@champion",
            input=str(folder / "applications.parquet"),
            output=str(folder / "scores"),
            passthrough=["application_id"],
        ),
        workspace,
    )
    return folder, fresh


def check(workspace: WorkspaceConfig, folder: Path, labels: str, threshold: float) -> object:
    params = PerformanceParams(
        model=MODEL,
        predictions=str(folder / "scores"),
        labels=labels,
        id_column="application_id",
        label_column="default",
        metric="accuracy",
        threshold=threshold,
    )
    return performance_check(params, workspace)


def test_accuracy_on_late_labels_matches_the_model_and_passes_a_low_threshold(
    workspace: WorkspaceConfig, scored: tuple[Path, object]
):
    folder, fresh = scored
    summary = check(workspace, folder, str(folder / "labels.parquet"), threshold=0.5)
    with workspace.resolve().mlflow.session():
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(fresh)
    assert summary.labelled_rows == 2_000 and summary.unmatched_labels == 0
    assert summary.value == pytest.approx(accuracy_score(fresh["default"], expected["prediction"]))
    assert not summary.degraded and summary.metric == "accuracy"


def test_accuracy_below_the_threshold_emits_performance_degraded(
    workspace: WorkspaceConfig, scored: tuple[Path, object], tmp_path: Path
):
    folder, fresh = scored
    flipped = fresh[["application_id", "default"]].assign(default=lambda f: 1 - f["default"])
    flipped.to_parquet(tmp_path / "flipped.parquet", index=False)
    summary = check(workspace, folder, str(tmp_path / "flipped.parquet"), threshold=0.88)
    assert summary.degraded and summary.value < 0.5
    found = model_events(MODEL, PERFORMANCE_DEGRADED, summary.model.version)
    assert found and found[0].payload["metric"] == "accuracy" and found[0].payload["threshold"] == 0.88


def test_labels_that_match_no_prediction_are_a_clear_error(
    workspace: WorkspaceConfig, scored: tuple[Path, object], tmp_path: Path
):
    folder, fresh = scored
    fresh[["application_id", "default"]].assign(application_id=-1).to_parquet(tmp_path / "other.parquet", index=False)
    with pytest.raises(DataError, match=r"has a label in .*other\.parquet \(joined on 'application_id'\)"):
        check(workspace, folder, str(tmp_path / "other.parquet"), threshold=0.5)


def night(scores: Path, source: Path, name: str, version: str | None = None, corrupt: bool = False) -> None:
    """Publish partition `name` in `scores`: a copy of the scored night in `source`, under the champion or `version`.

    `corrupt` writes bytes no reader can parse instead: reading that partition fails the check.
    """
    (manifest,) = (source / "_manifests").glob("run=*.json")
    record = json.loads(manifest.read_text())
    record["partition"] = name
    record["model"]["version"] = version or record["model"]["version"]
    (scores / "_manifests").mkdir(parents=True, exist_ok=True)
    (scores / "_manifests" / f"run={name}.json").write_text(json.dumps(record))
    (scores / f"run={name}").mkdir()
    (part,) = (source / manifest.stem).glob("*.parquet")
    table = pd.read_parquet(part)
    if version:
        table = table.assign(model_version=version, prediction=1 - table["prediction"])  # another version's guesses
    target = scores / f"run={name}" / "part-00000.parquet"
    target.write_bytes(b"not parquet") if corrupt else table.to_parquet(target)


def performance_params(predictions: Path, labels: Path, **settings: object) -> PerformanceParams:
    return PerformanceParams(
        model=MODEL,
        predictions=str(predictions),
        labels=str(labels),
        id_column="application_id",
        label_column="default",
        metric="accuracy",
        threshold=0.5,
        **settings,
    )


def test_ids_scored_twice_count_once_and_other_versions_partitions_are_not_read(
    workspace: WorkspaceConfig, scored: tuple[Path, object], tmp_path: Path
):
    folder, fresh = scored
    scores = tmp_path / "scores"
    shutil.copytree(folder / "scores", scores)
    night(scores, folder / "scores", "rescored")  # the same night scored again
    night(scores, folder / "scores", "other", version="999", corrupt=True)  # a later version's night
    summary = performance_check(performance_params(scores, folder / "labels.parquet"), workspace)
    with workspace.resolve().mlflow.session():
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(fresh)
    assert summary.labelled_rows == 2_000 and summary.unmatched_labels == 0
    assert summary.ignored_predictions == 2_000  # the repeats
    assert "other" not in summary.partitions and "rescored" in summary.partitions
    assert summary.value == pytest.approx(accuracy_score(fresh["default"], expected["prediction"]))


def test_only_the_windows_partitions_are_read(workspace: WorkspaceConfig, scored: tuple[Path, object], tmp_path: Path):
    folder, _ = scored
    today = dt.datetime.now(dt.UTC).date()
    yesterday, last_week, earlier = (f"{today - dt.timedelta(days=days):%Y-%m-%d}" for days in (1, 7, 8))
    scores = tmp_path / "scores"
    night(scores, folder / "scores", yesterday)
    night(scores, folder / "scores", last_week, corrupt=True)  # outside the window: never opened
    night(scores, folder / "scores", earlier)  # outside the window: its rows (the same ids again) do not count
    params = performance_params(scores, folder / "labels.parquet", window_days=2)
    summary = performance_check(params, workspace)
    assert summary.partitions == [yesterday]
    assert summary.labelled_rows == 2_000 and summary.ignored_predictions == 0
    stale = tmp_path / "stale"
    night(stale, folder / "scores", last_week)
    with pytest.raises(DataError, match=rf"no partition scored by {MODEL} v\d+ from .*published: \['{last_week} "):
        performance_check(performance_params(stale, folder / "labels.parquet", window_days=2), workspace)
