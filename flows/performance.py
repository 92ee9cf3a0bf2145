"""The performance check: the champion's predictions joined with late-arriving labels, scored over a window.

Every check emits `mlpipe.performance.checked`; a primary metric worse than the threshold also
emits `mlpipe.performance.degraded`, with the model as the resource (as the drift check does).
"""

import datetime as dt

from prefect import flow
from prefect.artifacts import create_table_artifact
from pydantic import BaseModel, Field

from blocks.cluster import WorkspaceTaskRunner
from blocks.workspace import WorkspaceConfig
from flows.common import announce, open_workspace, scheduled_time
from tasks.performance import PerformanceSummary, check_performance_task
from tasks.report import artifact_key

CHECKED = "mlpipe.performance.checked"
DEGRADED = "mlpipe.performance.degraded"


class PerformanceParams(BaseModel):
    """Where the predictions and the labels are, how to join them, and what is good enough."""

    model: str = Field(description="registered model name (its champion is checked)")
    predictions: str = Field(description="scored output (e.g. a batch scoring output folder)")
    labels: str = Field(description="labels: Parquet/CSV file, directory or glob")
    id_column: str = Field(description="the row id in both")
    label_column: str = Field(description="the true label in the labels")
    metric: str | None = Field(default=None, description="default: roc_auc (classification) or rmse")
    threshold: float | None = Field(default=None, description="degraded when the metric is worse than this")
    window_days: float | None = Field(default=None, gt=0, description="only labels this recent (needs time_column)")
    time_column: str | None = Field(default=None, description="when each label was observed")


@flow(name="performance-check", task_runner=WorkspaceTaskRunner(), validate_parameters=True)  # type: ignore[arg-type]
def performance_check(params: PerformanceParams, config: WorkspaceConfig | None = None) -> PerformanceSummary:
    """Score the champion on labelled rows of the window; emit events."""
    workspace = open_workspace(config)
    since = scheduled_time() - dt.timedelta(days=params.window_days) if params.window_days else None
    summary = check_performance_task.submit(
        params.model,
        params.predictions,
        params.labels,
        params.id_column,
        params.label_column,
        params.metric,
        params.threshold,
        since,
        params.time_column,
        workspace.mlflow,
    ).result()
    create_table_artifact(
        key=artifact_key(f"{params.model}-performance"),
        table=[{"metric": name, "value": round(value, 6)} for name, value in summary.metrics.items()],
        description=f"{summary.model.name} v{summary.model.version} on {summary.labelled_rows:,} labelled rows: "
        f"{summary.metric} {summary.value:.4f} (threshold {summary.threshold})",
    )
    payload = {
        "metric": summary.metric,
        "value": summary.value,
        "threshold": summary.threshold,
        "labelled_rows": summary.labelled_rows,
    }
    announce(CHECKED, DEGRADED, summary.degraded, summary.model, payload)
    return summary
