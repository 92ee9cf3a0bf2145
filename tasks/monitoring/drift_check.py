"""What a drift check compares and reports: the champion's training data, the new data, and the verdict.

The reference is found from the model version's lineage (the run's `training` dataset input),
so a check needs only the model name and where the new data is. The reference is read whole (the
model was trained on it, so it fits) and fixes the bins; the current data is counted into them
partition by partition (`profile_partition`, run on Dask workers), so its size is not limited
by memory.
"""

import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.drift import DriftPolicy
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError, DataError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.data.columns import check_schema, coerce
from mlpipe.tasks.data.files import Batch, InputFile, list_inputs, read_blocks, read_layout
from mlpipe.tasks.links import run_link
from mlpipe.tasks.metrics import probability_columns
from mlpipe.tasks.model.importance import load_importance
from mlpipe.tasks.monitoring.drift import (
    DatasetDrift,
    FeatureDrift,
    FeatureWeights,
    column_drift,
    dataset_drift,
    importance_weights,
)
from mlpipe.tasks.monitoring.profiles import Baseline, Profile
from mlpipe.tasks.registry.model_ref import ResolvedModel, load_model
from mlpipe.workspace import available_cores

if TYPE_CHECKING:  # matplotlib loads when the histograms are drawn
    from matplotlib.figure import Figure

PREDICTION = "prediction score"
"""The name under which the model's own output is compared (prediction drift)."""
NULL_JUMP = 0.1
OUT_OF_RANGE = 0.01
PARTITION_ROWS = 1_000_000
"""Rows of current data per Dask task (whole row groups): memory per worker thread, not per dataset."""


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
    report: str
    """Where the histograms and the full result are: a link to the MLflow run (or how to open it)."""


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


class DataPlan(BaseModel):
    """The files at a location, cut into partitions of whole row groups (or one CSV file each)."""

    location: str
    files: list[str]
    partitions: list[Batch]


def plan_data(location: str, model: ResolvedModel) -> DataPlan:
    """List the files, read their footers or headers, and check their columns against the model's signature.

    Raises:
        DataError: no files, a file that cannot be read, a column missing or of the wrong type.
    """
    files: list[InputFile] = []
    partitions: list[Batch] = []
    for listed in list_inputs(location):
        described, cut = read_layout(listed, PARTITION_ROWS, len(partitions))
        if described.problem:
            raise DataError(f"{described.url}: {described.problem}")
        files.append(described)
        partitions.extend(cut)
    check_schema(files, model.inputs, [])
    return DataPlan(location=location, files=[file.url for file in files], partitions=partitions)


def read_partition(partition: Batch, model: ResolvedModel) -> Iterator[tuple[pd.DataFrame, int]]:
    """The partition's rows typed as the model takes them, block by block, with the rows left out for a bad CSV cell."""
    names = [column.name for column in model.inputs]
    text = partition.file.format == "csv"
    for table, first_row in read_blocks(partition, names):
        frame, bad = coerce(table, model.inputs, first_row, partition.file.url, text=text)
        yield frame[names], len(bad)


def profile_partition(
    partition: Batch, model: ResolvedModel, baseline: Baseline, tracking: MlflowConnection, threads: int
) -> Profile:
    """Count one partition of the current data, and the model's scores on it, into the reference's bins."""
    predictor = load_model(model, tracking, threads)
    profile: Profile | None = None
    for block, (frame, unparseable) in enumerate(read_partition(partition, model)):
        scored = frame.assign(**{PREDICTION: model_score(predictor, frame)})
        part = baseline.profile(scored, seed=partition.index * 1_000 + block, unparseable=unparseable)
        profile = part if profile is None else baseline.merge(profile, part, seed=partition.index)
    if profile is None:  # a file with a header and no rows
        return baseline.profile(pd.DataFrame({name: [] for name in [*baseline.numeric, *baseline.categorical]}), 0)
    return profile


def check_policy(policy: DriftPolicy, model: ResolvedModel) -> None:
    """A critical feature the model does not take would never fire: a typo, named before any data is read.

    Raises:
        ConfigError: a `critical` feature that is not one of the model's inputs.
    """
    inputs = [column.name for column in model.inputs]
    unknown = [name for name in policy.critical if name not in inputs]
    if unknown:
        raise ConfigError(
            f"drift.critical: {unknown} are not inputs of model '{model.reference}'; expected names from {inputs}"
        )


def reference_profile(
    model: ResolvedModel, location: str, policy: DriftPolicy, tracking: MlflowConnection
) -> tuple[Baseline, Profile, DataPlan]:
    """Check the policy against the model; read the reference whole, score it, fix its bins and count it into them."""
    check_policy(policy, model)
    plan = plan_data(location, model)
    frames = [frame for partition in plan.partitions for frame, _ in read_partition(partition, model)]
    reference = pd.concat(frames, ignore_index=True)
    reference[PREDICTION] = model_score(load_model(model, tracking, available_cores()), reference)
    baseline = Baseline.of(reference, policy)
    return baseline, baseline.profile(reference, seed=0), plan


def model_score(predictor: Any, rows: pd.DataFrame) -> pd.Series:
    """The model's score: the last class's probability, or the regression prediction."""
    if rows.empty:
        return pd.Series([], index=rows.index, dtype="float64")
    output = predictor.predict(None, rows)
    probabilities = probability_columns(output)
    return output[probabilities[-1] if probabilities else "prediction"].set_axis(rows.index)


def quality_signals(baseline: Baseline, reference: Profile, current: Profile) -> list[QualitySignal]:
    """Null-rate jumps (≥ 10 points), categories never seen in training, numbers outside the training range (≥ 1 %)."""
    signals = []
    if current.unparseable:
        share = current.unparseable / (current.rows + current.unparseable)
        detail = f"{current.unparseable:,} rows left out: a value could not be parsed as the model's type"
        signals.append(QualitySignal(feature="*", signal="unparseable", value=share, threshold=0.0, detail=detail))
    for name, cur in current.columns.items():
        if name == PREDICTION:
            continue
        ref = reference.columns[name]
        cur_rate, ref_rate = cur.missing / max(current.rows, 1), ref.missing / max(reference.rows, 1)
        if cur_rate - ref_rate >= NULL_JUMP:
            detail = f"missing in {cur_rate:.1%} of rows, {ref_rate:.1%} in training"
            signals.append(
                QualitySignal(
                    feature=name, signal="null rate", value=cur_rate - ref_rate, threshold=NULL_JUMP, detail=detail
                )
            )
        bins = baseline.numeric.get(name)
        if bins is not None:
            outside = cur.outside / max(current.rows, 1)
            if outside >= OUT_OF_RANGE:
                detail = f"{outside:.1%} of values outside the training range [{bins.low:g}, {bins.high:g}]"
                signals.append(
                    QualitySignal(
                        feature=name, signal="out of range", value=outside, threshold=OUT_OF_RANGE, detail=detail
                    )
                )
            continue
        # A reference that folded its rare categories into `other` cannot tell which were never seen.
        unseen = [] if ref.other else sorted(set(cur.categories) - set(ref.categories))
        if unseen:
            share = sum(cur.categories[c] for c in unseen) / max(current.rows, 1)
            detail = f"{len(unseen)} unseen, e.g. {unseen[:3]}"
            signals.append(
                QualitySignal(feature=name, signal="unseen categories", value=share, threshold=0.0, detail=detail)
            )
    return signals


def histograms(baseline: Baseline, reference: Profile, current: Profile, results: list[FeatureDrift]) -> "Figure":
    """Reference and current distribution of every compared feature over the test's own bins, drifted ones in red."""
    from matplotlib.figure import Figure

    columns = 3
    rows = max(1, -(-len(results) // columns))
    figure = Figure(figsize=(4 * columns, 2.6 * rows))
    axes = figure.subplots(rows, columns, squeeze=False).ravel()
    for axis, result in zip(axes, results, strict=False):
        bins = baseline.numeric.get(result.feature)
        if bins is not None and len(bins.edges) > 1:
            edges = np.concatenate([bins.edges[:-1], [bins.high]])
            widths = np.diff(edges)
            for label, profile in (("reference", reference), ("current", current)):
                counts = profile.columns[result.feature].counts[1:-1]
                density = np.divide(counts / max(counts.sum(), 1), widths, out=np.zeros(len(widths)), where=widths > 0)
                axis.stairs(density, edges, fill=True, alpha=0.5, label=label)
        elif bins is None:
            shares = pd.DataFrame(
                {
                    label: pd.Series(profile.columns[result.feature].categories, dtype="float64")
                    for label, profile in (("reference", reference), ("current", current))
                }
            ).fillna(0)
            (shares / shares.sum().replace(0, 1)).sort_values("reference", ascending=False).head(12).plot.bar(
                ax=axis, alpha=0.7
            )
        weight = "" if result.weight is None else f", weight {result.weight:.2f}"
        axis.set_title(
            f"{result.feature}: {result.test} {result.statistic:.3g}{weight}",
            color="red" if result.drifted else "black",
            fontsize=9,
        )
        axis.legend(fontsize=7)
    for axis in axes[len(results) :]:
        axis.set_visible(False)
    figure.tight_layout()
    return figure


def report_drift(
    model: ResolvedModel,
    baseline: Baseline,
    reference: tuple[DataPlan, Profile],
    current: tuple[DataPlan, Profile],
    policy: DriftPolicy,
    tracking: MlflowConnection,
) -> DriftSummary:
    """Every feature's test, the dataset's verdict, prediction drift and quality signals; logged to MLflow."""
    (reference_plan, reference_profile), (current_plan, current_profile) = reference, current
    results = [
        column_drift(name, baseline, reference_profile.columns[name], current_profile.columns[name], policy)
        for name in (column.name for column in model.inputs)
    ]
    prediction = column_drift(
        PREDICTION, baseline, reference_profile.columns[PREDICTION], current_profile.columns[PREDICTION], policy
    )
    data = dataset_drift(results, policy, model_weights(model, tracking), prediction)
    figure = histograms(baseline, reference_profile, current_profile, data.features)
    experiment_id, run_id = _log(model, data, prediction, figure, tracking)
    return DriftSummary(
        model=model,
        reference=reference_plan.location,
        current=current_plan.files,
        reference_rows=reference_profile.rows,
        current_rows=current_profile.rows,
        data=data,
        prediction=prediction,
        quality=quality_signals(baseline, reference_profile, current_profile),
        drifted=data.drifted,
        mlflow_run_id=run_id,
        report=run_link(tracking, experiment_id, run_id),
    )


def model_weights(model: ResolvedModel, tracking: MlflowConnection) -> FeatureWeights:
    """Each input's weight in the verdict: the importance stored with the model's run, or equal weights without one."""
    importance = load_importance(model.run_id, tracking)
    names = [column.name for column in model.inputs]
    if importance is None:
        return importance_weights(names, None, "")
    return importance_weights(names, importance.importances, importance.describe())


def _log(
    model: ResolvedModel,
    data: DatasetDrift,
    prediction: FeatureDrift,
    figure: "Figure",
    tracking: MlflowConnection,
) -> tuple[str, str]:
    """A run in the model's experiment: drift shares, each statistic, the histograms and the full result
    (`drift/features.json`: each feature's test, weight and contribution, and the rules that fired)."""
    from mlflow.entities import Metric

    client = tracking.client()
    run = client.create_run(
        tracking.experiment_id(model.name or "drift"),
        run_name=f"drift-check-{model.name}-v{model.version}",
        tags={
            "mlpipe.kind": "drift-check",
            "mlpipe.model_name": model.name,
            "mlpipe.model_version": model.version,
            "mlpipe.drift.rules": ",".join(data.rules) or "none",
            "mlpipe.drift.weighting": data.weighting,
        },
    )
    metrics = [
        Metric("drift_share", data.drift_share, 0, 0),
        Metric("weighted_drift_share", data.weighted_share, 0, 0),
        Metric("dataset_drifted", float(data.drifted), 0, 0),
    ]
    metrics += [Metric(f"drift_{r.feature.replace(' ', '_')}", r.statistic, 0, 0) for r in [*data.features, prediction]]
    client.log_batch(run.info.run_id, metrics=metrics)
    client.log_figure(run.info.run_id, figure, "drift/histograms.png")
    client.log_dict(run.info.run_id, data.model_dump(mode="json"), "drift/features.json")
    client.set_terminated(run.info.run_id)
    return str(run.info.experiment_id), str(run.info.run_id)


reference_task = pipeline_task(reference_profile, cache_policy=NO_CACHE)
report_task = pipeline_task(report_drift, cache_policy=NO_CACHE)
