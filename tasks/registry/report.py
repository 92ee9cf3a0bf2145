"""What a training or retraining decided, shown in the Prefect UI and recorded on the model versions."""

import datetime as dt
from typing import Any

from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.tasks import artifacts
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.links import artifact_key, mlflow_links, run_link
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
    """Metrics table, explanation table, fairness table, gate decision with the numbers compared (the fairness
    limit's too), and the link to the MLflow run."""
    key = artifact_key(registration.name)
    links = mlflow_links(
        tracking,
        run_id=model.run_id,
        experiment_id=model.experiment_id,
        models=[(registration.name, registration.version)],
    )
    artifacts.table(
        f"{key}-metrics",
        [{"metric": name, "test": round(value, 6)} for name, value in evaluation.metrics.items()],
        f"{registration.name} v{registration.version}: test-set metrics",
        links=links,
    )
    if evaluation.explanation is not None:
        artifacts.table(
            f"{key}-explanation",
            evaluation.explanation.table(),
            f"{registration.name} v{registration.version}: feature importance, {evaluation.explanation.describe()}",
            links=links,
        )
    if evaluation.fairness is not None:
        artifacts.table(
            f"{key}-fairness",
            evaluation.fairness.table(),
            f"{registration.name} v{registration.version}: test-set metrics by sensitive column and group"
            + (f" (positive class {evaluation.fairness.positive_class})" if evaluation.fairness.positive_class else ""),
            links=links,
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
    artifacts.markdown(
        f"{key}-gate",
        f"# Gate: {verdict}\n\n{decision.reason}\n\n| | version | {decision.metric} |\n|---|---|---|\n{table}\n\n"
        f"{_fairness_table(decision)}"
        f"Aliases on v{registration.version}: {', '.join(registration.aliases) or 'none'}\n",
        f"{registration.name}: gate decision",
        links=links,
    )
    artifacts.link(
        f"{key}-mlflow-run",
        run_link(tracking, model.experiment_id, model.run_id),
        "MLflow run",
        f"{registration.name} v{registration.version}: the training run's parameters, metrics, plots and model",
    )


def _fairness_table(decision: GateDecision) -> str:
    """The fairness limit and the candidate's difference on each column it applies to (nothing without a limit)."""
    limit = decision.fairness_limit
    if limit is None or decision.fairness is None:
        return ""
    rows = "\n".join(
        f"| {column} | {value:.4f} | {limit.max:g} | {'above' if value > limit.max else 'within'} |"
        for column, value in decision.fairness.items()
    )
    return f"| sensitive column | {limit.metric} | limit | |\n|---|---|---|---|\n{rows}\n\n"


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
    compared = [decision.challenger, *([decision.champion] if decision.champion else [])]
    for version in set(compared):
        client.set_model_version_tag(decision.model_name, version, key, note)
    title = f"v{decision.challenger} {verdict} against v{decision.champion}"
    rows = "\n".join(f"| {key} | {value} |" for key, value in decision.payload().items())
    artifacts.markdown(
        artifact_key(f"{decision.model_name}-retraining"),
        f"# Retraining: {title}\n\n| | |\n| --- | --- |\n{rows}\n",
        f"{decision.model_name}: retraining decision",
        links=mlflow_links(tracking, models=[(decision.model_name, version) for version in compared]),
    )


publish_task = pipeline_task(publish, cache_policy=NO_CACHE)
record_retraining_task = pipeline_task(record_retraining, cache_policy=NO_CACHE)
