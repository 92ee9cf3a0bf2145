"""Evaluate: score the logged model on the test split; log metrics, plots, predictions, feature importance,
the explanation and, for sensitive columns, the group metrics (fairness)."""

import io
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
import pandas as pd
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.cluster import cluster_client
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.data.split import SplitRefs, share_of
from mlpipe.tasks.datasets import DatasetRef, partitions, read_snapshot, read_table
from mlpipe.tasks.metrics import PROBABILITY_PREFIX, compute_metrics, probability_columns
from mlpipe.tasks.model.explanation import Explanation, explain, log_explanation
from mlpipe.tasks.model.fairness import FairnessReport, fairness_report, log_fairness
from mlpipe.tasks.model.importance import log_importance, permutation_importance_of
from mlpipe.tasks.model.requirements import check_requirements_quickly
from mlpipe.tasks.model.train import TrainedModel
from mlpipe.workspace import available_cores

if TYPE_CHECKING:  # loaded when the step runs, not by a cached run that never evaluates
    from matplotlib.figure import Figure
    from mlflow import MlflowClient
    from mlflow.pyfunc import PyFuncModel

PREDICTIONS_ARTIFACT = "evaluation/test_predictions.parquet"
HOLDOUT_ROWS = 10_000
"""Rows of a partitioned test split sampled to measure feature importance and the explanation on
(they sample fewer: importance.SAMPLE_ROWS, explanation.EXPLAINED_ROWS); the metrics take every row."""


class Evaluation(BaseModel):
    """Test-set scores of one logged model."""

    run_id: str
    test_hash: str
    metrics: dict[str, float]
    explanation: Explanation | None = None
    """Which input columns the model leans on (None in an evaluation cached before explanations were made)."""
    fairness: FairnessReport | None = None
    """Group metrics of the sensitive columns (None when the training named none)."""


def score(
    model_uri: str, test: DatasetRef, contract: DataContract, tracking: MlflowConnection, store: Datastore
) -> dict[str, float]:
    """Scores of the logged pyfunc model on the `test` split's raw rows (a partitioned split a partition per worker)."""
    model = _load(model_uri, tracking)
    rows, predictions, _ = scored(model, model_uri, test, contract, tracking, store)
    return compute_metrics(contract.task, rows[contract.target], predictions, model.unwrap_python_model().classes)


def _load(model_uri: str, tracking: MlflowConnection) -> "PyFuncModel":
    import mlflow

    check_requirements_quickly()
    with tracking.session():
        return mlflow.pyfunc.load_model(model_uri)


class Scored(NamedTuple):
    """A test split's rows and a model's predictions on them, in the same order."""

    rows: pd.DataFrame
    """Every column of one file; the target and the kept columns of a partitioned split."""
    predictions: pd.DataFrame
    holdout: pd.DataFrame
    """Rows with every column, to measure importance and the explanation on: all of one file, or about the rows
    asked for of a partitioned split, chosen by row hash (`split.sample_rows`' rows)."""


def scored(
    model: "PyFuncModel",
    model_uri: str,
    test: DatasetRef,
    contract: DataContract,
    tracking: MlflowConnection,
    store: Datastore,
    keep: list[str] | None = None,
    holdout: int = 0,
    seed: int = 0,
) -> Scored:
    """The test split's rows and the model's predictions on them.

    One file is read and predicted here, and all its columns come back. A partitioned split is
    predicted a partition to a worker (`model_uri` loaded there), each reading only its own rows,
    and only the target and the `keep` columns come back with the predictions, never the features:
    metrics, plots and group metrics computed from them are still those of the whole split. Each
    worker also sends back its share of a `holdout`-row sample, so nothing reads the split twice.
    """
    if not test.partitioned:
        rows = read_snapshot(test, store)
        return Scored(rows, model.predict(rows[contract.feature_names]), rows)
    with cluster_client() as client:
        futures = client.map(
            _predict_part,
            partitions(test),
            model_uri=model_uri,
            contract=contract,
            tracking=tracking,
            store=store,
            columns=[contract.target, *(keep or [])],
            share=min(1.0, holdout / test.rows),
            seed=seed,
            pure=False,
        )
        parts = client.gather(futures)
    return Scored(*(pd.concat(frames, ignore_index=True) for frames in zip(*parts, strict=True)))


def _predict_part(
    part: DatasetRef,
    model_uri: str,
    contract: DataContract,
    tracking: MlflowConnection,
    store: Datastore,
    columns: list[str],
    share: float,
    seed: int,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    table = read_table(part, store)
    rows = table.to_pandas()
    sample = share_of(table, share, seed).to_pandas() if share else rows.iloc[:0]
    return rows[columns], _load(model_uri, tracking).predict(rows[contract.feature_names]), sample


def evaluate(
    model: TrainedModel,
    splits: SplitRefs,
    contract: DataContract,
    tracking: MlflowConnection,
    store: Datastore,
    sensitive: list[str] | None = None,
) -> Evaluation:
    """Scores on the test split, exactly as the registered pyfunc model will produce them (every row; a
    partitioned split a partition per worker, see `scored`), the importance of each input column on
    it, stored with the model for drift checks to weigh features by, the explanation (mean |SHAP
    contribution| per input column where the model has exact ones), and how the same predictions
    differ between the groups of each `sensitive` column (fairness.py).
    """
    from mlflow.entities import Metric
    from threadpoolctl import threadpool_limits

    test, seed = splits.test, model.spec.seed
    logged = _load(model.model_uri, tracking)
    tabular = logged.unwrap_python_model()
    with threadpool_limits(available_cores()):  # as in training: Dask worker processes start with one thread
        rows, predictions, holdout = scored(
            logged, model.model_uri, test, contract, tracking, store, sensitive, HOLDOUT_ROWS, seed
        )
        metrics = compute_metrics(contract.task, rows[contract.target], predictions, tabular.classes)
        importance = permutation_importance_of(tabular, holdout, contract, seed, test.source)
        explanation = explain(tabular, holdout, contract.feature_names, seed, importance)
    fairness = fairness_report(rows, predictions, contract, sensitive) if sensitive else None
    # Logged through the client, not by reopening the run: a failure here must not mark the
    # finished training run as failed, and a retry overwrites the same metric steps.
    client = tracking.client()
    timestamp = int(time.time() * 1000)
    client.log_batch(
        model.run_id,
        metrics=[Metric(f"test_{name}", value, timestamp, 0) for name, value in metrics.items()],
    )
    for name, figure in _plots(contract, rows[contract.target], predictions).items():
        client.log_figure(model.run_id, figure, f"evaluation/{name}.png")
    buffer = io.BytesIO()
    predictions.assign(target=rows[contract.target].to_numpy()).to_parquet(buffer)
    _log_bytes(client, model.run_id, buffer.getvalue(), PREDICTIONS_ARTIFACT)
    log_importance(importance, model.run_id, tracking)
    log_explanation(explanation, model.run_id, client)
    if fairness is not None:
        log_fairness(fairness, model.run_id, client)
    return Evaluation(
        run_id=model.run_id,
        test_hash=splits.test.content_hash,
        metrics=metrics,
        explanation=explanation,
        fairness=fairness,
    )


def _plots(contract: DataContract, truth: pd.Series, predictions: pd.DataFrame) -> dict[str, "Figure"]:
    from matplotlib.figure import Figure
    from sklearn.metrics import ConfusionMatrixDisplay, RocCurveDisplay

    if contract.task == "regression":
        figure = Figure(figsize=(6, 4))
        axis = figure.subplots()
        predicted = predictions["prediction"]
        axis.scatter(predicted, truth.to_numpy() - predicted.to_numpy(), s=4, alpha=0.4)
        axis.axhline(0.0, color="black", linewidth=1)
        axis.set(xlabel="prediction", ylabel="residual (actual − predicted)", title="Residuals on the test set")
        return {"residuals": figure}
    figures: dict[str, Figure] = {}
    figure = Figure(figsize=(5, 5))
    axis = figure.subplots()
    matrix, labels = _confusion(truth, predictions["prediction"])
    ConfusionMatrixDisplay(matrix, display_labels=labels).plot(ax=axis)
    figures["confusion_matrix"] = figure
    columns = probability_columns(predictions)
    if len(columns) == 2 and truth.nunique() == 2:
        positive = columns[1].removeprefix(PROBABILITY_PREFIX)
        figure = Figure(figsize=(5, 5))
        axis = figure.subplots()
        RocCurveDisplay.from_predictions(truth.astype(str) == positive, predictions[columns[1]], ax=axis)
        figures["roc_curve"] = figure
    return figures


def _confusion(truth: pd.Series, predicted: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Counts of (actual, predicted) label pairs over the labels of either, in text order.

    Counted by hashing (a crosstab): scikit-learn's `confusion_matrix` sorts the labels as text
    row by row, a third of a second on 150k rows."""
    counts = pd.crosstab(truth.astype(str).to_numpy(), predicted.astype(str).to_numpy())
    labels = sorted({*counts.index, *counts.columns})
    return counts.reindex(index=labels, columns=labels, fill_value=0).to_numpy(), labels


def _log_bytes(client: "MlflowClient", run_id: str, content: bytes, artifact_path: str) -> None:
    directory, _, name = artifact_path.rpartition("/")
    with tempfile.TemporaryDirectory() as scratch:
        local = Path(scratch) / name
        local.write_bytes(content)
        client.log_artifact(run_id, str(local), directory or None)


evaluate_task = pipeline_task(evaluate)
