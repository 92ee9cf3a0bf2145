"""The training flow on a folder of files: one partitioned dataset, each partition validated by a task of its own."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster, get_task_stream

from mlpipe.blocks import WorkspaceConfig
from mlpipe.demo_data import credit_default
from mlpipe.errors import ValidationFailed
from mlpipe.flows.drift import DriftParams, drift_check
from mlpipe.flows.retraining import RetrainingParams, retraining
from mlpipe.tasks.data.split import sample_rows
from mlpipe.tasks.datasets import partitions
from mlpipe.tasks.model.evaluate import PREDICTIONS_ARTIFACT, _load, scored
from mlpipe.tasks.registry.champion import run_contract
from tests.pipeline import loans_by_sex, model_versions, run_training

pytestmark = pytest.mark.flow

PARTITIONED_DATA_TASKS = ("ingest", "check-part", "accept", "split")


def write_parts(frame: pd.DataFrame, folder: Path, parts: int) -> Path:
    folder.mkdir()
    for index, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_csv(folder / f"day-{index:02d}.csv", index=False)
    return folder


def test_a_folder_trains_with_each_partition_checked_by_its_own_task_and_reruns_from_cache(
    workspace: WorkspaceConfig, tmp_path: Path, demo_frame: pd.DataFrame
):
    folder = write_parts(demo_frame, tmp_path / "days", parts=8)
    params = {"data": str(folder), "target": "default", "name": "partitioned-demo", "exclude": ["application_id"]}
    first = run_training(workspace, **params)
    assert first.error is None, first.error
    summary = first.summary
    assert summary is not None and summary.dataset.rows == len(demo_frame) and len(summary.dataset.parts) == 8
    assert all(len(part.parts) == 8 for part in (summary.splits.train, summary.splits.validation, summary.splits.test))
    assert summary.metrics["roc_auc"] > 0.7
    assert all(first.task_states[t] == "Completed" for t in PARTITIONED_DATA_TASKS)
    assert sum(name.startswith("check-part-") for name in first.task_runs) == 8

    second = run_training(workspace, **params)
    assert second.error is None, second.error
    assert {t: second.task_states[t] for t in PARTITIONED_DATA_TASKS} == dict.fromkeys(PARTITIONED_DATA_TASKS, "Cached")
    assert second.summary is not None and second.summary.version == summary.version


def test_a_partitioned_test_split_is_scored_a_partition_per_worker_to_the_numbers_of_one_file(
    workspace: WorkspaceConfig, tmp_path: Path
):
    frame = loans_by_sex(6_000, seed=5, biased=True)
    one_file = tmp_path / "loans.csv"
    frame.to_csv(one_file, index=False)
    common = {"target": "approved", "name": "loans-scored-by-part", "sensitive": ["sex"]}
    whole = run_training(workspace, data=str(one_file), **common)
    parted = run_training(workspace, data=str(write_parts(frame, tmp_path / "loans", parts=8)), **common)
    assert whole.error is None, whole.error
    assert parted.error is None, parted.error
    first, second = whole.summary, parted.summary
    assert first is not None and second is not None and len(second.splits.test.parts) == 8
    assert second.metrics == pytest.approx(first.metrics, rel=1e-12)
    assert first.fairness is not None and second.fairness is not None
    assert second.fairness.table() == first.fairness.table()
    resolved = workspace.resolve()
    tracking = resolved.mlflow
    with tracking.session():
        predictions = [
            pd.read_parquet(mlflow.artifacts.download_artifacts(f"runs:/{run}/{PREDICTIONS_ARTIFACT}"))
            for run in (first.run_id, second.run_id)
        ]
    pd.testing.assert_frame_equal(predictions[1], predictions[0])
    # the gate scored the champion (the one-file model) on the partitioned test split, and got its own number
    assert second.gate.champion_version == first.version == "1"
    assert second.gate.champion == pytest.approx(first.metrics["roc_auc"], rel=1e-12)
    assert not second.gate.passed and "does not beat champion v1" in second.gate.reason

    contract, uri = run_contract(second.run_id, tracking), f"models:/{common['name']}/1"
    model, store = _load(uri, tracking), resolved.datastore
    with (
        LocalCluster(n_workers=2, processes=False) as cluster,
        Client(cluster) as client,
        get_task_stream(client) as stream,
    ):
        rows, scores, holdout = scored(model, uri, second.splits.test, contract, tracking, store, ["sex"], 300, 7)
    assert sum(task["key"].startswith("_predict_part") for task in stream.data) == 8
    assert list(rows.columns) == ["approved", "sex"]  # the features stayed on the workers
    pd.testing.assert_frame_equal(scores.assign(target=rows["approved"].to_numpy()), predictions[0])
    # the workers' shares of the holdout are the row-hash sample of the whole split, read once
    pd.testing.assert_frame_equal(holdout, sample_rows(second.splits.test, store, 300, seed=7))
    assert 200 < len(holdout) < len(rows)


def test_a_broken_partition_fails_validation_naming_it_and_registers_nothing(
    workspace: WorkspaceConfig, tmp_path: Path, demo_frame: pd.DataFrame
):
    params = {"target": "default", "name": "partitioned-broken", "exclude": ["application_id"]}
    good = run_training(workspace, data=str(write_parts(demo_frame, tmp_path / "good", parts=4)), **params)
    assert good.error is None, good.error
    broken = demo_frame.copy()
    broken.loc[2300:, "credit_score"] = np.nan  # the last of four files, and only it
    outcome = run_training(workspace, data=str(write_parts(broken, tmp_path / "broken", parts=4)), **params)
    assert isinstance(outcome.error, ValidationFailed)
    assert "column 'credit_score': expect_column_values_to_not_be_null" in str(outcome.error)
    assert str(outcome.error).endswith(" in part-00003.parquet")
    assert [v.version for v in model_versions(workspace, "partitioned-broken")] == [1]
    assert good.summary is not None
    assert len(partitions(good.summary.dataset)) == 4


def test_drift_and_retraining_read_partitioned_data(
    workspace: WorkspaceConfig, tmp_path: Path, demo_frame: pd.DataFrame
):
    name = "partitioned-monitored"
    common = {"target": "default", "name": name, "exclude": ["application_id"]}
    first = run_training(workspace, data=str(write_parts(demo_frame, tmp_path / "first", parts=4)), **common)
    assert first.error is None, first.error
    drifted = write_parts(credit_default(rows=3_000, seed=61, drift=1.0), tmp_path / "drifted", parts=4)
    summary = drift_check(DriftParams(model=name, current=str(drifted)), workspace)
    assert first.summary is not None and summary.reference == first.summary.splits.train.uri  # the parts' folder
    assert summary.drifted and "income" in summary.data.drifted_features
    retrained = retraining(
        RetrainingParams(data=str(drifted), history=str(tmp_path / "first"), reason="drift", **common), workspace
    )
    assert retrained.training.dataset.partitioned and retrained.training.version == "2"
