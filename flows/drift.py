"""The drift check: the model's training data versus new data → per-feature tests, verdict, report, events.

Every check emits `mlpipe.drift.checked`; a drifted dataset also emits `mlpipe.drift.detected`.
Both carry the rules that fired (importance-weighted share, prediction drift, a critical feature).
The model is the events' resource (labels `mlpipe.model.name` and `mlpipe.model.version`), so an
automation can react to drift of one model without knowing any id.
"""

from distributed import as_completed
from pydantic import Field

from mlpipe.blocks.workspace import WorkspaceConfig
from mlpipe.errors import DataError
from mlpipe.flows.common import (
    WindowTemplate,
    dask_client,
    open_workspace,
    pipeline_flow,
    resolve_window,
    scheduled_time,
    threads_per_task,
)
from mlpipe.tasks.events import DRIFT_CHECKED, DRIFT_DETECTED, announce
from mlpipe.tasks.monitoring.drift_check import (
    DataPlan,
    DriftSummary,
    plan_data,
    profile_partition,
    reference_task,
    report_task,
    training_reference,
)
from mlpipe.tasks.monitoring.profiles import Baseline, Profile
from mlpipe.tasks.monitoring.report import publish_drift
from mlpipe.tasks.registry.model_ref import ResolvedModel, resolve_task
from mlpipe.validation import Name, Strict


class DriftParams(Strict):
    """Which model, and the data to compare with what it was trained on."""

    model: Name = Field(description="registered model name")
    current: WindowTemplate = Field(
        description="new data: Parquet/CSV file, directory or glob (local or fsspec URL); may contain "
        "{window_start:%Y-%m-%d} and {window_end:…}, filled from the run's scheduled time"
    )
    reference: str | None = Field(default=None, description="default: the model version's training data")
    alias: str = Field(default="champion", description="which version of the model to check")
    window_days: float = Field(default=1.0, gt=0, description="length of the current window before the scheduled time")


@pipeline_flow("drift-check")
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
    payload = publish_drift(summary, workspace.mlflow)
    announce(DRIFT_CHECKED, DRIFT_DETECTED, summary.drifted, model.name, model.version, payload)
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
