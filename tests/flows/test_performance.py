"""Performance on late labels: predictions joined with labels by id, scored, and degraded runs announced."""

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


def test_ids_scored_twice_count_once_and_other_versions_predictions_are_left_out(
    workspace: WorkspaceConfig, scored: tuple[Path, object], tmp_path: Path
):
    folder, fresh = scored
    scores = tmp_path / "scores"
    shutil.copytree(folder / "scores", scores)
    (part,) = (scores / next(p.name for p in scores.iterdir() if p.name.startswith("run="))).glob("*.parquet")
    table = pd.read_parquet(part)
    (scores / "run=rescored").mkdir()
    table.to_parquet(scores / "run=rescored" / "part-00000.parquet")  # the same night scored again
    other = table.assign(model_version="999", prediction=1 - table["prediction"])  # a later version's guesses
    (scores / "run=other").mkdir()
    other.to_parquet(scores / "run=other" / "part-00000.parquet")
    params = PerformanceParams(
        model=MODEL,
        predictions=str(scores),
        labels=str(folder / "labels.parquet"),
        id_column="application_id",
        label_column="default",
        metric="accuracy",
        threshold=0.5,
    )
    summary = performance_check(params, workspace)
    with workspace.resolve().mlflow.session():
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion").predict(fresh)
    assert summary.labelled_rows == 2_000 and summary.unmatched_labels == 0
    assert summary.ignored_predictions == 2 * 2_000  # the repeats and the other version's
    assert summary.value == pytest.approx(accuracy_score(fresh["default"], expected["prediction"]))
