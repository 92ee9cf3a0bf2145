"""What a drift check compares and reports: the champion's training data, the new data, and the verdict.

The reference is found from the model version's lineage (the run's `training` dataset input),
so a check needs only the model name and where the new data is.
"""

import json
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from matplotlib.figure import Figure
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from blocks.drift import DriftPolicy
from blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from tasks.batches import list_inputs
from tasks.caching import pipeline_task
from tasks.drift import DatasetDrift, FeatureDrift, dataset_drift, feature_drift
from tasks.model_ref import ResolvedModel

PREDICTION = "prediction score"
"""The name under which the model's own output is compared (prediction drift)."""
NULL_JUMP = 0.1
OUT_OF_RANGE = 0.01


class QualitySignal(BaseModel):
    """A data-quality finding on the current data: null-rate jump, unseen categories, out-of-range values."""

    feature: str
    signal: str
    value: float
    threshold: float
    detail: str


class DriftSummary(BaseModel):
    """A drift check's verdict and evidence."""

    model: ResolvedModel
    reference: str
    current: list[str]
    reference_rows: int
    current_rows: int
    data: DatasetDrift
    prediction: FeatureDrift
    quality: list[QualitySignal]
    drifted: bool
    mlflow_run_id: str


def training_reference(model: ResolvedModel, tracking: MlflowConnection) -> str:
    """The URI of the snapshot the model version was trained on.

    Raises:
        ConfigError: the model's run records no training dataset (a model not trained by mlpipe).
    """
    if model.run_id is None:
        raise ConfigError(f"model '{model.reference}' has no run to find its training data in; pass --reference")
    inputs = tracking.client().get_run(model.run_id).inputs
    for dataset_input in inputs.dataset_inputs if inputs else []:
        context = {tag.key: tag.value for tag in dataset_input.tags}.get("mlflow.data.context")
        if context == "training":
            return str(json.loads(dataset_input.dataset.source)["uri"])
    raise ConfigError(f"model '{model.reference}': its run records no training dataset; pass --reference")


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


def compare(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    features: list[str],
    scores: tuple[pd.Series, pd.Series],
    policy: DriftPolicy,
) -> tuple[DatasetDrift, FeatureDrift, list[QualitySignal]]:
    """Every feature's drift, the dataset's verdict, the prediction drift and data-quality signals."""
    results = [feature_drift(name, reference[name], current[name], policy) for name in features if name in current]
    prediction = feature_drift(PREDICTION, scores[0], scores[1], policy)
    return dataset_drift(results, policy), prediction, quality_signals(reference, current, features)


def quality_signals(reference: pd.DataFrame, current: pd.DataFrame, features: list[str]) -> list[QualitySignal]:
    """Null-rate jumps (≥ 10 points), categories never seen in training, numbers outside the training range (≥ 1 %)."""
    signals = []
    for name in features:
        if name not in current:
            continue
        ref, cur = reference[name], current[name]
        jump = float(cur.isna().mean() - ref.isna().mean())
        if jump >= NULL_JUMP:
            signals.append(
                QualitySignal(
                    feature=name,
                    signal="null rate",
                    value=jump,
                    threshold=NULL_JUMP,
                    detail=f"missing in {cur.isna().mean():.1%} of rows, {ref.isna().mean():.1%} in training",
                )
            )
        if pd.api.types.is_numeric_dtype(ref) and not pd.api.types.is_bool_dtype(ref):
            low, high = ref.min(), ref.max()
            outside = float(((cur < low) | (cur > high)).mean())
            if outside >= OUT_OF_RANGE:
                signals.append(
                    QualitySignal(
                        feature=name,
                        signal="out of range",
                        value=outside,
                        threshold=OUT_OF_RANGE,
                        detail=f"{outside:.1%} of values outside the training range [{low:g}, {high:g}]",
                    )
                )
        else:
            unseen = sorted(set(cur.dropna().astype(str)) - set(ref.dropna().astype(str)))
            if unseen:
                share = float(cur.astype(str).isin(unseen).mean())
                signals.append(
                    QualitySignal(
                        feature=name,
                        signal="unseen categories",
                        value=share,
                        threshold=0.0,
                        detail=f"{len(unseen)} unseen, e.g. {unseen[:3]}",
                    )
                )
    return signals


def histograms(reference: pd.DataFrame, current: pd.DataFrame, results: list[FeatureDrift]) -> Figure:
    """Reference and current distribution of every compared feature, drifted ones titled in red."""
    columns = 3
    rows = max(1, -(-len(results) // columns))
    figure = Figure(figsize=(4 * columns, 2.6 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, result in zip(axes, results, strict=False):
        ref, cur = reference[result.feature].dropna(), current[result.feature].dropna()
        if result.kind == "numeric":
            edges = np.histogram_bin_edges(ref.to_numpy(dtype="float64"), bins=30)
            axis.hist(ref, bins=edges, density=True, alpha=0.5, label="reference")
            axis.hist(cur, bins=edges, density=True, alpha=0.5, label="current")
        else:
            shares = (
                pd.DataFrame(
                    {
                        "reference": ref.astype(str).value_counts(normalize=True),
                        "current": cur.astype(str).value_counts(normalize=True),
                    }
                )
                .fillna(0)
                .head(12)
            )
            shares.plot.bar(ax=axis, alpha=0.7)
        axis.set_title(
            f"{result.feature}: {result.test} {result.statistic:.3g}",
            color="red" if result.drifted else "black",
            fontsize=9,
        )
        axis.legend(fontsize=7)
    for axis in axes[len(results) :]:
        axis.set_visible(False)
    figure.tight_layout()
    return figure


def feature_table(summary: DriftSummary) -> list[dict[str, Any]]:
    """One row per feature (and the prediction) for the Prefect artifact and the CLI."""
    return [
        {
            "feature": r.feature,
            "test": r.test,
            "statistic": round(r.statistic, 6),
            "threshold": r.threshold,
            "drifted": r.drifted,
        }
        for r in [*summary.data.features, summary.prediction]
    ]


def check_drift(
    model_reference: str, current: str, reference: str | None, policy: DriftPolicy, tracking: MlflowConnection
) -> DriftSummary:
    """Compare the new data (and the model's scores on it) with the model's training data; log the evidence."""
    import mlflow

    from tasks.model_ref import resolve_model

    model = resolve_model(model_reference, tracking)
    features = [column.name for column in model.inputs]
    reference_location = reference or training_reference(model, tracking)
    reference_rows, _ = read_rows(reference_location, features)
    current_rows, files = read_rows(current, features)
    with tracking.session():
        predictor = mlflow.pyfunc.load_model(model.uri).unwrap_python_model()
    scores = tuple(_score(predictor, rows) for rows in (reference_rows, current_rows))
    data, prediction, quality = compare(reference_rows, current_rows, features, (scores[0], scores[1]), policy)
    run_id = _log(model, data, prediction, reference_rows, current_rows, tracking)
    return DriftSummary(
        model=model,
        reference=reference_location,
        current=files,
        reference_rows=len(reference_rows),
        current_rows=len(current_rows),
        data=data,
        prediction=prediction,
        quality=quality,
        drifted=data.drifted,
        mlflow_run_id=run_id,
    )


def _score(predictor: Any, rows: pd.DataFrame) -> pd.Series:
    """The model's score: the last class's probability, or the regression prediction."""
    output = predictor.predict(None, rows)
    probabilities = [c for c in output.columns if c.startswith("probability_")]
    return output[probabilities[-1] if probabilities else "prediction"]


def _log(
    model: ResolvedModel,
    data: DatasetDrift,
    prediction: FeatureDrift,
    reference: pd.DataFrame,
    current: pd.DataFrame,
    tracking: MlflowConnection,
) -> str:
    """A run in the model's experiment: drift share, each statistic, the histograms and the full result."""
    from mlflow.entities import Metric

    client = tracking.client()
    run = client.create_run(
        tracking.experiment_id(model.name or "drift"),
        run_name=f"drift-check-{model.name}-v{model.version}",
        tags={"mlpipe.kind": "drift-check", "mlpipe.model_name": model.name, "mlpipe.model_version": model.version},
    )
    metrics = [Metric("drift_share", data.drift_share, 0, 0), Metric("dataset_drifted", float(data.drifted), 0, 0)]
    metrics += [Metric(f"drift_{r.feature.replace(' ', '_')}", r.statistic, 0, 0) for r in [*data.features, prediction]]
    client.log_batch(run.info.run_id, metrics=metrics)
    client.log_figure(run.info.run_id, histograms(reference, current, data.features), "drift/histograms.png")
    client.log_dict(run.info.run_id, data.model_dump(mode="json"), "drift/features.json")
    client.set_terminated(run.info.run_id)
    return str(run.info.run_id)


check_drift_task = pipeline_task(check_drift, cache_policy=NO_CACHE)
