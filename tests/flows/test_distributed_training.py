"""Distributed training: xgboost.dask on worker processes, one pyfunc that predicts like its evaluation."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlpipe.blocks import DaskCluster, WorkspaceConfig
from mlpipe.demo_data import credit_default
from mlpipe.tasks.datasets import read_snapshot
from mlpipe.tasks.model.evaluate import PREDICTIONS_ARTIFACT
from tests.pipeline import run_training

pytestmark = pytest.mark.flow

EXCLUDE = ["application_id"]


def write_parts(frame: pd.DataFrame, folder: Path, parts: int) -> Path:
    folder.mkdir()
    for index, rows in enumerate(np.array_split(np.arange(len(frame)), parts)):
        frame.iloc[rows].to_parquet(folder / f"part-{index:02d}.parquet")
    return folder


def test_xgboost_dask_on_two_worker_processes_predicts_like_its_evaluation_and_like_one_task(
    workspace: WorkspaceConfig, tmp_path: Path
):
    data = write_parts(credit_default(rows=20_000, seed=11), tmp_path / "loans", parts=8)
    params = {"data": str(data), "target": "default", "exclude": EXCLUDE}
    two_processes = workspace.model_copy(
        update={"cluster": DaskCluster(n_workers=2, threads_per_worker=1, processes=True)}
    )
    spread = run_training(two_processes, name="spread", model={"distributed": True}, **params)
    assert spread.error is None, spread.error
    single = run_training(workspace, name="single", model={"distributed": False}, **params)
    assert single.error is None, single.error
    assert spread.summary is not None and single.summary is not None

    tracking = workspace.resolve().mlflow
    assert tracking.client().get_run(spread.summary.run_id).data.params["distributed"] == "True"
    assert "distributed" not in tracking.client().get_run(single.summary.run_id).data.params
    with tracking.session():
        evaluated = pd.read_parquet(
            mlflow.artifacts.download_artifacts(f"runs:/{spread.summary.run_id}/{PREDICTIONS_ARTIFACT}")
        )
        model = mlflow.pyfunc.load_model("models:/spread@champion")
    test_rows = read_snapshot(spread.summary.splits.test, workspace.resolve().datastore)
    predicted = model.predict(test_rows)
    np.testing.assert_allclose(predicted["probability_1"], evaluated["probability_1"], rtol=1e-6)
    assert (predicted["prediction"].to_numpy() == evaluated["prediction"].to_numpy()).all()
    assert abs(spread.summary.metrics["accuracy"] - single.summary.metrics["accuracy"]) <= 0.005
