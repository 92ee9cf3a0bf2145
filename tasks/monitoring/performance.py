"""Live performance: join the predictions a model made with the labels that arrived later, and score them."""

import datetime as dt
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import DataError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.data.files import list_inputs
from mlpipe.tasks.metrics import DEFAULT_PRIMARY, compute_metrics, meets_threshold, probability_column
from mlpipe.tasks.registry.aliases import CHAMPION
from mlpipe.tasks.registry.model_ref import ResolvedModel, resolve_model


class PerformanceSummary(BaseModel):
    """The model's metrics on labelled rows of the window, and whether the primary one fell below the threshold."""

    model: ResolvedModel
    metric: str
    value: float
    threshold: float | None
    degraded: bool
    metrics: dict[str, float]
    labelled_rows: int
    unmatched_labels: int


def check_performance(
    model_name: str,
    predictions: str,
    labels: str,
    id_column: str,
    label_column: str,
    metric: str | None,
    threshold: float | None,
    since: dt.datetime | None,
    time_column: str | None,
    tracking: MlflowConnection,
) -> PerformanceSummary:
    """Score the champion's predictions against labels joined by `id_column` (labels since `since`, if timed).

    Raises:
        DataError: a column is missing, or no prediction has a label.
    """
    import mlflow

    model = resolve_model(f"{model_name}@{CHAMPION}", tracking)
    with tracking.session():
        predictor = mlflow.pyfunc.load_model(model.uri).unwrap_python_model()
    predicted, _ = read_rows(predictions, [id_column, "prediction", *_probability_names(predictor)])
    truth, _ = read_rows(labels, [id_column, label_column, *([time_column] if time_column else [])])
    for frame, where, needed in (
        (predicted, predictions, [id_column, "prediction"]),
        (truth, labels, [id_column, label_column]),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(f"{where}: column(s) {missing} missing")
    if since is not None and time_column:
        truth = truth[pd.to_datetime(truth[time_column], utc=True) >= since]
    joined = predicted.merge(truth, on=id_column, how="inner", suffixes=("", "_label"))
    if joined.empty:
        raise DataError(f"no prediction in {predictions} has a label in {labels} (joined on '{id_column}')")
    metrics = compute_metrics(predictor.task, joined[label_column], joined, predictor.classes)
    primary = metric or DEFAULT_PRIMARY[predictor.task]
    if primary not in metrics:
        raise DataError(f"metric '{primary}' is not one of {sorted(metrics)}")
    value = metrics[primary]
    return PerformanceSummary(
        model=model,
        metric=primary,
        value=value,
        threshold=threshold,
        degraded=not meets_threshold(primary, value, threshold),
        metrics=metrics,
        labelled_rows=len(joined),
        unmatched_labels=len(truth) - len(joined),
    )


def read_rows(location: str, columns: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The given columns of every Parquet/CSV file at `location` (file, directory or glob), and the file URLs."""
    files = list_inputs(location)
    tables = []
    for file in files:
        with fsspec.open(file.url, "rb") as handle:
            if file.format == "parquet":
                parquet = pq.ParquetFile(handle)
                table = parquet.read(columns=[c for c in columns if c in parquet.schema_arrow.names])
            else:
                table = pacsv.read_csv(handle)
        tables.append(table.select([c for c in columns if c in table.column_names]))
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return frame, [file.url for file in files]


def _probability_names(predictor: Any) -> list[str]:
    return [probability_column(label) for label in predictor.classes or []]


check_performance_task = pipeline_task(check_performance, cache_policy=NO_CACHE)
