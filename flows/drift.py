"""The drift check: the model's training data versus new data → per-feature tests, verdict, report, events.

Every check emits `mlpipe.drift.checked`; a drifted dataset also emits `mlpipe.drift.detected`.
The model is the events' resource (labels `mlpipe.model.name` and `mlpipe.model.version`), so an
automation can react to drift of one model without knowing any id.
"""

from distributed import as_completed
from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from pydantic import BaseModel, Field

from blocks.cluster import WorkspaceTaskRunner
from blocks.workspace import WorkspaceConfig
from flows.common import announce, dask_client, open_workspace, resolve_window, scheduled_time, threads_per_task
from mlpipe.errors import DataError
from tasks.model_ref import ResolvedModel, resolve_task
from tasks.monitor import (
    DataPlan,
    DriftSummary,
    feature_table,
    plan_data,
    profile_partition,
    reference_task,
    report_task,
    training_reference,
)
from tasks.profile import Baseline, Profile
from tasks.report import artifact_key

CHECKED = "mlpipe.drift.checked"
DETECTED = "mlpipe.drift.detected"


class DriftParams(BaseModel):
    """Which model, and the data to compare with what it was trained on."""

    model: str = Field(description="registered model name")
    current: str = Field(
        description="new data: Parquet/CSV file, directory or glob (local or fsspec URL); may contain "
        "{window_start:%Y-%m-%d} and {window_end:…}, filled from the run's scheduled time"
    )
    reference: str | None = Field(default=None, description="default: the model version's training data")
    alias: str = Field(default="champion", description="which version of the model to check")
    window_days: float = Field(default=1.0, gt=0, description="length of the current window before the scheduled time")


@flow(name="drift-check", task_runner=WorkspaceTaskRunner(), validate_parameters=True)  # type: ignore[arg-type]
def drift_check(params: DriftParams, config: WorkspaceConfig | None = None) -> DriftSummary:
    """Compare new data with the model's training data; report, and emit events."""
    workspace = open_workspace(config)
    current, _ = resolve_window(params.current, scheduled_time(), params.window_days)
    model = resolve_task.submit(f"{params.model}@{params.alias}", workspace.mlflow).result()
    current_plan = plan_data(current, model)  # fails on bad input before the reference is read
    reference = params.reference or training_reference(model, workspace.mlflow)
    baseline, reference_profile, reference_plan = reference_task.submit(
        model, reference, workspace.drift, workspace.mlflow
    ).result()
    current_profile = profile_current(current_plan, model, baseline, workspace)
    summary = report_task.submit(
        model,
        baseline,
        (reference_plan, reference_profile),
        (current_plan, current_profile),
        workspace.drift,
        workspace.mlflow,
    ).result()
    key = artifact_key(f"{params.model}-drift")
    create_table_artifact(key=key, table=feature_table(summary), description=_headline(summary))
    create_markdown_artifact(key=f"{key}-quality", markdown=_quality_markdown(summary))
    payload = {
        "drifted": summary.drifted,
        "drift_share": summary.data.drift_share,
        "drifted_features": summary.data.drifted_features,
        "prediction_drifted": summary.prediction.drifted,
        "mlflow_run_id": summary.mlflow_run_id,
        "report": summary.report,
        "current": summary.current,
    }
    announce(CHECKED, DETECTED, summary.drifted, summary.model, payload)
    return summary


def profile_current(plan: DataPlan, model: ResolvedModel, baseline: Baseline, workspace: WorkspaceConfig) -> Profile:
    """Count every partition of the current data on the Dask workers, merging in partition order (reproducible).

    Partitions are plain Dask tasks (milliseconds each, not a Prefect task run per partition);
    only their profiles travel back, so memory follows the partition size, not the data's.

    Raises:
        DataError: the files hold no rows.
    """
    client = dask_client()
    threads = threads_per_task(len(plan.partitions))
    futures = [
        client.submit(profile_partition, partition, model, baseline, workspace.mlflow, threads, pure=False)
        for partition in plan.partitions
    ]
    position = {future.key: index for index, future in enumerate(futures)}
    waiting: dict[int, Profile] = {}
    merged: Profile | None = None
    following = 0
    for future in as_completed(futures, loop=client.loop):
        waiting[position[future.key]] = future.result()
        while following in waiting:
            part = waiting.pop(following)
            merged = part if merged is None else baseline.merge(merged, part, seed=following)
            following += 1
    if merged is None:
        raise DataError(f"{plan.location}: no rows to check")
    return merged


def _headline(summary: DriftSummary) -> str:
    verdict = "drift detected" if summary.drifted else "no dataset drift"
    return (
        f"{summary.model.name} v{summary.model.version}: {verdict} "
        f"({len(summary.data.drifted_features)} of {len(summary.data.features)} features, "
        f"share {summary.data.drift_share:.2f}); {summary.current_rows:,} rows vs {summary.reference_rows:,}"
    )


def _quality_markdown(summary: DriftSummary) -> str:
    lines = [f"# Data quality: {summary.model.name} v{summary.model.version}", ""]
    if not summary.quality:
        return "\n".join([*lines, "No null-rate jumps, unseen categories or out-of-range values."])
    lines += ["| feature | signal | value | detail |", "| --- | --- | --- | --- |"]
    lines += [f"| {q.feature} | {q.signal} | {q.value:.3f} | {q.detail} |" for q in summary.quality]
    return "\n".join(lines)
