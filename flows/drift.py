"""The drift check: the model's training data versus new data → per-feature tests, verdict, report, events.

Every check emits `mlpipe.drift.checked`; a drifted dataset also emits `mlpipe.drift.detected`.
The model is the events' resource (labels `mlpipe.model.name` and `mlpipe.model.version`), so an
automation can react to drift of one model without knowing any id.
"""

from prefect import flow
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.events import emit_event
from pydantic import BaseModel, Field

from blocks.cluster import WorkspaceTaskRunner
from blocks.workspace import WorkspaceConfig
from flows.common import model_resource, open_workspace
from tasks.monitor import DriftSummary, check_drift_task, feature_table
from tasks.report import artifact_key

CHECKED = "mlpipe.drift.checked"
DETECTED = "mlpipe.drift.detected"


class DriftParams(BaseModel):
    """Which model, and the data to compare with what it was trained on."""

    model: str = Field(description="registered model name")
    current: str = Field(description="new data: Parquet/CSV file, directory or glob (local or fsspec URL)")
    reference: str | None = Field(default=None, description="default: the model version's training data")
    alias: str = Field(default="champion", description="which version of the model to check")


@flow(name="drift-check", task_runner=WorkspaceTaskRunner(), validate_parameters=True)  # type: ignore[arg-type]
def drift_check(params: DriftParams, config: WorkspaceConfig | None = None) -> DriftSummary:
    """Compare new data with the model's training data; report, and emit events."""
    workspace = open_workspace(config)
    summary = check_drift_task.submit(
        f"{params.model}@{params.alias}", params.current, params.reference, workspace.drift, workspace.mlflow
    ).result()
    key = artifact_key(f"{params.model}-drift")
    create_table_artifact(key=key, table=feature_table(summary), description=_headline(summary))
    create_markdown_artifact(key=f"{key}-quality", markdown=_quality_markdown(summary))
    resource = model_resource(summary.model.name, summary.model.version)
    payload = {
        "drifted": summary.drifted,
        "drift_share": summary.data.drift_share,
        "drifted_features": summary.data.drifted_features,
        "prediction_drifted": summary.prediction.drifted,
        "mlflow_run_id": summary.mlflow_run_id,
        "current": summary.current,
    }
    emit_event(CHECKED, resource=resource, payload=payload)
    if summary.drifted:
        emit_event(DETECTED, resource=resource, payload=payload)
    return summary


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
