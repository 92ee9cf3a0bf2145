"""What the checks show in the Prefect UI, and the evidence their events carry."""

from typing import Any

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.tasks import artifacts
from mlpipe.tasks.links import artifact_key, mlflow_links
from mlpipe.tasks.monitoring.drift import Rule
from mlpipe.tasks.monitoring.drift_check import DriftSummary
from mlpipe.tasks.monitoring.performance import PerformanceSummary

EVENT_FILES = 100
"""Current files an event names at most: a capture folder holds thousands, and Prefect refuses an event
over 1.5 MB (`PREFECT_SERVER_EVENTS_MAXIMUM_SIZE_BYTES`); `current_files` gives the count."""
RULE_WORDS: dict[Rule, str] = {
    "weighted_share": "the importance-weighted share of drifted features",
    "prediction": "prediction drift",
    "critical": "a critical feature",
}


def publish_drift(summary: DriftSummary, tracking: MlflowConnection) -> dict[str, Any]:
    """The per-feature table and the data-quality findings as artifacts; returns the events' payload.

    The payload names the rules that fired (`weighted_share`, `prediction`, `critical`; none when
    nothing drifted), so an automation or a person reading the event knows why without the report.
    """
    key = artifact_key(f"{summary.model.name}-drift")
    links = mlflow_links(
        tracking,
        run_id=summary.mlflow_run_id,
        run_label="MLflow run with the histograms",
        models=[(summary.model.name, summary.model.version)],
    )
    artifacts.table(key, feature_table(summary), _headline(summary), links=links)
    title = f"{summary.model.name} v{summary.model.version}: data quality"
    artifacts.markdown(f"{key}-quality", _quality_markdown(summary), title, links=links)
    return drift_payload(summary)


def drift_payload(summary: DriftSummary) -> dict[str, Any]:
    """What the drift events carry: the verdict, the evidence, the first `EVENT_FILES` current files and their count."""
    return {
        "drifted": summary.drifted,
        "rules": summary.data.rules,
        "weighted_share": summary.data.weighted_share,
        "weighting": summary.data.weighting,
        "drift_share": summary.data.drift_share,
        "drifted_features": summary.data.drifted_features,
        "contributions": {f.feature: f.contribution for f in summary.data.features if f.drifted},
        "critical_drifted": summary.data.critical_drifted,
        "prediction_drifted": summary.prediction.drifted,
        "mlflow_run_id": summary.mlflow_run_id,
        "report": summary.report,
        "current": summary.current[:EVENT_FILES],
        "current_files": len(summary.current),
    }


def feature_table(summary: DriftSummary) -> list[dict[str, Any]]:
    """One row per feature (and the prediction) for the Prefect artifact and the CLI.

    `weight` is the feature's share of the model's importance and `contribution` what its drift adds
    to the weighted drift share (the prediction score has neither: its drift is a rule of its own).
    """
    return [
        {
            "feature": r.feature,
            "test": r.test,
            "statistic": round(r.statistic, 6),
            "threshold": r.threshold,
            "drifted": r.drifted,
            "weight": None if r.weight is None else round(r.weight, 4),
            "contribution": None if r.contribution is None else round(r.contribution, 4),
        }
        for r in [*summary.data.features, summary.prediction]
    ]


def publish_performance(summary: PerformanceSummary, tracking: MlflowConnection) -> dict[str, Any]:
    """The metrics on the labelled rows as a table artifact; returns the events' payload."""
    artifacts.table(
        artifact_key(f"{summary.model.name}-performance"),
        [{"metric": name, "value": round(value, 6)} for name, value in summary.metrics.items()],
        f"{summary.model.name} v{summary.model.version} on {summary.labelled_rows:,} labelled rows: "
        f"{summary.metric} {summary.value:.4f} (threshold {summary.threshold})",
        links=mlflow_links(tracking, models=[(summary.model.name, summary.model.version)]),
    )
    return {
        "metric": summary.metric,
        "value": summary.value,
        "threshold": summary.threshold,
        "labelled_rows": summary.labelled_rows,
    }


def _headline(summary: DriftSummary) -> str:
    return (
        f"{summary.model.name} v{summary.model.version}: {verdict(summary)}; "
        f"{summary.current_rows:,} rows vs {summary.reference_rows:,}; weights: {summary.data.weighting}"
    )


def verdict(summary: DriftSummary) -> str:
    """The verdict in words with the evidence for each rule: for the artifact, the CLI and logs."""
    data = summary.data
    said = (
        f"drift detected by {', '.join(RULE_WORDS[rule] for rule in data.rules)}"
        if data.drifted
        else "no dataset drift"
    )
    return (
        f"{said} ({len(data.drifted_features)} of {len(data.features)} features drifted, "
        f"weighted share {data.weighted_share:.2f}; "
        f"prediction score {'drifted' if summary.prediction.drifted else 'stable'})"
    )


def _quality_markdown(summary: DriftSummary) -> str:
    lines = [f"# Data quality: {summary.model.name} v{summary.model.version}", ""]
    if not summary.quality:
        return "\n".join([*lines, "No null-rate jumps, unseen categories or out-of-range values."])
    lines += ["| feature | signal | value | detail |", "| --- | --- | --- | --- |"]
    lines += [f"| {q.feature} | {q.signal} | {q.value:.3f} | {q.detail} |" for q in summary.quality]
    return "\n".join(lines)
