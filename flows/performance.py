"""The performance check: the champion's predictions joined with late-arriving labels, scored over a window.

Every check emits `mlpipe.performance.checked`; a primary metric worse than the threshold also
emits `mlpipe.performance.degraded`, with the model as the resource (as the drift check does).
"""

import datetime as dt

from pydantic import Field

from mlpipe.blocks.workspace import WorkspaceConfig
from mlpipe.flows.common import open_workspace, pipeline_flow, scheduled_time
from mlpipe.tasks.events import PERFORMANCE_CHECKED, PERFORMANCE_DEGRADED, announce
from mlpipe.tasks.monitoring.performance import PerformanceSummary, check_performance_task
from mlpipe.tasks.monitoring.report import publish_performance
from mlpipe.validation import Name, Strict


class PerformanceParams(Strict):
    """Where the predictions and the labels are, how to join them, and what is good enough."""

    model: Name = Field(description="registered model name (its champion is checked)")
    predictions: str = Field(description="scored output (e.g. a batch scoring output folder)")
    labels: str = Field(description="labels: Parquet/CSV file, directory or glob")
    id_column: str = Field(description="the row id in both")
    label_column: str = Field(description="the true label in the labels")
    metric: str | None = Field(default=None, description="default: roc_auc (classification) or rmse")
    threshold: float | None = Field(default=None, description="degraded when the metric is worse than this")
    window_days: float | None = Field(
        default=None,
        gt=0,
        description="only this recent: the scoring output's nights, and labels (with time_column)",
    )
    time_column: str | None = Field(default=None, description="when each label was observed")


@pipeline_flow("performance-check")
def performance_check(params: PerformanceParams, config: WorkspaceConfig | None = None) -> PerformanceSummary:
    """Score the champion on labelled rows of the window; emit events."""
    workspace = open_workspace(config)
    until = scheduled_time()
    since = until - dt.timedelta(days=params.window_days) if params.window_days else None
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
        until=until,
    ).result()
    payload = publish_performance(summary, workspace.mlflow)
    model = summary.model
    announce(PERFORMANCE_CHECKED, PERFORMANCE_DEGRADED, summary.degraded, model.name, model.version, payload)
    return summary
