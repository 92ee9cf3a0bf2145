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
from mlpipe.tasks.metrics import DEFAULT_PRIMARY, SCORED_BY, compute_metrics, meets_threshold, probability_column
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
    ignored_predictions: int = 0
    """Rows left out: predictions by another model version, and repeats of an id already scored."""


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
    predicted, _ = read_rows(predictions, [id_column, "prediction", *_probability_names(predictor), *SCORED_BY])
    truth, _ = read_rows(labels, [id_column, label_column, *([time_column] if time_column else [])])
    for frame, where, needed in (
        (predicted, predictions, [id_column, "prediction"]),
        (truth, labels, [id_column, label_column]),
    ):
        missing = [c for c in needed if c not in frame.columns]
        if missing:
            raise DataError(f"{where}: column(s) {missing} missing")
    predicted, ignored = champion_predictions(predicted, model, id_column)
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
        ignored_predictions=ignored,
    )


def champion_predictions(predicted: pd.DataFrame, model: ResolvedModel, id_column: str) -> tuple[pd.DataFrame, int]:
    """The rows this model version scored, one per id, and how many rows were left out.

    A scoring output holds every night's partitions, possibly of several versions, and a night
    scored again repeats its ids; each labelled id must count once, judged by the champion's
    own predictions. Predictions that name no model version (a user's file) are all kept.
    """
    kept = predicted
    if all(column in kept.columns for column in SCORED_BY):
        name, version = (kept[column].astype(str) for column in SCORED_BY)
        kept = kept[(name == model.name) & (version == model.version)]
    kept = kept.drop_duplicates(subset=[id_column], keep="last")
    return kept, len(predicted) - len(kept)


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
        tables.append(_decoded(table.select([c for c in columns if c in table.column_names])))
    frame = pa.concat_tables(tables, promote_options="permissive").to_pandas()
    return frame, [file.url for file in files]


def _decoded(table: pa.Table) -> pa.Table:
    """Dictionary-encoded columns (scoring writes constants so) as plain values, so files of any writer concatenate."""
    columns = [c.cast(c.type.value_type) if pa.types.is_dictionary(c.type) else c for c in table.columns]
    return pa.table(columns, names=table.column_names)


def _probability_names(predictor: Any) -> list[str]:
    return [probability_column(label) for label in predictor.classes or []]


check_performance_task = pipeline_task(check_performance, cache_policy=NO_CACHE)
