"""Report: Prefect artifacts that show a training run's outcome in the Prefect UI."""

import re

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE

from blocks.mlflow import MlflowConnection
from tasks.caching import pipeline_task
from tasks.evaluate import Evaluation
from tasks.gate import GateDecision
from tasks.register import Registration
from tasks.train import TrainedModel


def run_link(tracking: MlflowConnection, experiment_id: str, run_id: str) -> str:
    """A browser link to the MLflow run, or the command that opens a UI on a local store."""
    uri = tracking.tracking_uri or ""
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {uri}  (then open run {run_id})"


def publish(
    model: TrainedModel,
    evaluation: Evaluation,
    decision: GateDecision,
    registration: Registration,
    tracking: MlflowConnection,
) -> None:
    """Metrics table, gate decision with the numbers compared, and the link to the MLflow run."""
    key = artifact_key(registration.name)
    create_table_artifact(
        key=f"{key}-metrics",
        table=[{"metric": name, "test": round(value, 6)} for name, value in evaluation.metrics.items()],
        description=f"{registration.name} v{registration.version}: test-set metrics",
    )
    verdict = "passed — promoted to champion" if decision.passed else "rejected — stays challenger"
    rows = [
        ("candidate", f"v{registration.version}", f"{decision.candidate:.6g}"),
        (
            "champion",
            f"v{decision.champion_version}" if decision.champion_version else "none",
            _number(decision.champion),
        ),
        ("threshold", "", _number(decision.threshold)),
        ("margin", "", f"{decision.margin:g}"),
    ]
    table = "\n".join(f"| {what} | {version} | {value} |" for what, version, value in rows)
    create_markdown_artifact(
        key=f"{key}-gate",
        markdown=(
            f"# Gate: {verdict}\n\n{decision.reason}\n\n| | version | {decision.metric} |\n|---|---|---|\n{table}\n\n"
            f"Aliases on v{registration.version}: {', '.join(registration.aliases) or 'none'}\n"
        ),
        description=f"{registration.name}: gate decision",
    )
    link = run_link(tracking, model.experiment_id, model.run_id)
    if link.startswith("http"):
        create_link_artifact(key=f"{key}-mlflow-run", link=link, link_text="MLflow run")
    else:
        create_markdown_artifact(key=f"{key}-mlflow-run", markdown=f"MLflow run: `{link}`")


def artifact_key(model_name: str) -> str:
    """Prefect artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-") or "model"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


publish_task = pipeline_task(publish, cache_policy=NO_CACHE)
