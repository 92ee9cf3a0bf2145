"""Live performance: join the predictions a model made with the labels that arrived later, and score them.

From a scoring output, only the partitions the champion's version published within the window are
opened (their manifests say which model scored them and when); other nights, other versions'
partitions and unpublished folders are never read, so neither their rows nor a broken file
there can change the verdict.
"""

import datetime as dt
import posixpath
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import DataError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.data.files import list_inputs
from mlpipe.tasks.metrics import DEFAULT_PRIMARY, SCORED_BY, compute_metrics, meets_threshold, probability_column
from mlpipe.tasks.model.requirements import check_requirements_quickly
from mlpipe.tasks.registry.aliases import CHAMPION
from mlpipe.tasks.registry.model_ref import ResolvedModel, resolve_model
from mlpipe.tasks.scoring_layout import MANIFESTS, partition_folder
from mlpipe.tasks.storage import child


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
    partitions: list[str] = []
    """The scoring output's partitions read (none for predictions that are not a scoring output)."""


class PublishedPartition(BaseModel):
    """What a scoring manifest says about its partition: enough to choose which partitions to read."""

    partition: str
    model: ResolvedModel
    started: dt.datetime

    @property
    def day(self) -> dt.date:
        """The night it holds: its name when that is a date (nightly runs), else the day it was scored."""
        try:
            return dt.date.fromisoformat(self.partition)
        except ValueError:
            return self.started.date()


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
    until: dt.datetime | None = None,
) -> PerformanceSummary:
    """Score the champion's predictions against labels joined by `id_column` (labels since `since`, if timed).

    From a scoring output, only the champion version's partitions of the nights from `since` to
    `until` are read.

    Raises:
        DataError: a column is missing, no partition is in the window, or no prediction has a label.
    """
    import mlflow

    model = resolve_model(f"{model_name}@{CHAMPION}", tracking)
    check_requirements_quickly()
    with tracking.session():
        predictor = mlflow.pyfunc.load_model(model.uri).unwrap_python_model()
    partitions = window_partitions(predictions, model, since, until)
    locations = [predictions] if partitions is None else [child(predictions, p) for p in partitions]
    predicted, _ = read_rows(locations, [id_column, "prediction", *_probability_names(predictor), *SCORED_BY])
    truth, _ = read_rows([labels], [id_column, label_column, *([time_column] if time_column else [])])
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
        partitions=[name.split("=", 1)[1] for name in partitions or []],
    )


def window_partitions(
    predictions: str, model: ResolvedModel, since: dt.datetime | None, until: dt.datetime | None
) -> list[str] | None:
    """The partition folders of a scoring output that `model` published for nights from `since` to `until`.

    None when `predictions` is not a scoring output (a file, or a folder without manifests): all of it is read.

    Raises:
        DataError: a scoring output with no partition of this version in the window.
    """
    fs, root = url_to_fs(predictions)
    records = posixpath.join(root, MANIFESTS)
    if not fs.isdir(records):
        return None
    chosen, seen = [], []
    for path in sorted(fs.glob(posixpath.join(records, "*.json"))):
        with fs.open(path, "r") as handle:
            published = PublishedPartition.model_validate_json(handle.read())
        seen.append(f"{published.partition} (v{published.model.version})")
        same_model = (published.model.name, published.model.version) == (model.name, model.version)
        after = since is None or published.day >= since.date()
        before = until is None or published.day <= until.date()
        if same_model and after and before:
            chosen.append(partition_folder(published.partition))
    if not chosen:
        window = f"from {since:%Y-%m-%d} " if since else ""
        window += f"to {until:%Y-%m-%d}" if until else ""
        raise DataError(
            f"{predictions}: no partition scored by {model.name} v{model.version} {window}; published: {seen}"
        )
    return chosen


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


def read_rows(locations: list[str], columns: list[str]) -> tuple[pd.DataFrame, list[str]]:
    """The given columns of every Parquet/CSV file at `locations` (files, directories or globs), and the file URLs."""
    files = [file for location in locations for file in list_inputs(location)]
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
