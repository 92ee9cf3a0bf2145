"""What the checks show in the Prefect UI, and the evidence their events carry."""

from typing import Any

from prefect.artifacts import create_markdown_artifact, create_table_artifact

from mlpipe.tasks.links import artifact_key
from mlpipe.tasks.monitoring.drift_check import DriftSummary
from mlpipe.tasks.monitoring.performance import PerformanceSummary


def publish_drift(summary: DriftSummary) -> dict[str, Any]:
    """The per-feature table and the data-quality findings as artifacts; returns the events' payload."""
    key = artifact_key(f"{summary.model.name}-drift")
    create_table_artifact(key=key, table=feature_table(summary), description=_headline(summary))
    create_markdown_artifact(key=f"{key}-quality", markdown=_quality_markdown(summary))
    return {
        "drifted": summary.drifted,
        "drift_share": summary.data.drift_share,
        "drifted_features": summary.data.drifted_features,
        "prediction_drifted": summary.prediction.drifted,
        "mlflow_run_id": summary.mlflow_run_id,
        "report": summary.report,
        "current": summary.current,
    }


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


def publish_performance(summary: PerformanceSummary) -> dict[str, Any]:
    """The metrics on the labelled rows as a table artifact; returns the events' payload."""
    create_table_artifact(
        key=artifact_key(f"{summary.model.name}-performance"),
        table=[{"metric": name, "value": round(value, 6)} for name, value in summary.metrics.items()],
        description=f"{summary.model.name} v{summary.model.version} on {summary.labelled_rows:,} labelled rows: "
        f"{summary.metric} {summary.value:.4f} (threshold {summary.threshold})",
    )
    return {
        "metric": summary.metric,
        "value": summary.value,
        "threshold": summary.threshold,
        "labelled_rows": summary.labelled_rows,
    }


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
