"""What a training or retraining decided, shown in the Prefect UI and recorded on the model versions."""

import datetime as dt
from typing import Any

from prefect.artifacts import create_link_artifact, create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.links import artifact_key, run_link
from mlpipe.tasks.model.evaluate import Evaluation
from mlpipe.tasks.model.train import TrainedModel
from mlpipe.tasks.registry.gate import GateDecision
from mlpipe.tasks.registry.register import Registration


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


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.6g}"


class RetrainingDecision(BaseModel):
    """A challenger judged against the champion it was compared with, and why it was retrained."""

    model_name: str
    challenger: str
    champion: str | None
    metric: str
    challenger_score: float
    champion_score: float | None
    reason: str
    trigger: str
    promoted: bool

    @classmethod
    def of(
        cls, model_name: str, version: str, gate: GateDecision, previous: str | None, trigger: str
    ) -> "RetrainingDecision":
        return cls(
            model_name=model_name,
            challenger=version,
            champion=previous,
            metric=gate.metric,
            challenger_score=gate.candidate,
            champion_score=gate.champion,
            reason=gate.reason,
            trigger=trigger,
            promoted=gate.passed,
        )

    def payload(self) -> dict[str, Any]:
        """The decision as an event payload (the model itself is the event's resource)."""
        return self.model_dump(exclude={"model_name", "promoted"})


def record_retraining(decision: RetrainingDecision, tracking: MlflowConnection) -> None:
    """A tag on the challenger and on the champion it was compared with, and a markdown artifact."""
    client = tracking.client()
    verdict = "promoted" if decision.promoted else "rejected"
    note = (
        f"{verdict} v{decision.challenger} against v{decision.champion}: {decision.reason} "
        f"(trigger: {decision.trigger})"
    )
    key = f"mlpipe.retraining.{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    for version in {decision.challenger, *([decision.champion] if decision.champion else [])}:
        client.set_model_version_tag(decision.model_name, version, key, note)
    title = f"v{decision.challenger} {verdict} against v{decision.champion}"
    rows = "\n".join(f"| {key} | {value} |" for key, value in decision.payload().items())
    create_markdown_artifact(
        key=artifact_key(f"{decision.model_name}-retraining"),
        markdown=f"# Retraining: {title}\n\n| | |\n| --- | --- |\n{rows}\n",
        description=f"{decision.model_name}: retraining decision",
    )


publish_task = pipeline_task(publish, cache_policy=NO_CACHE)
record_retraining_task = pipeline_task(record_retraining, cache_policy=NO_CACHE)
