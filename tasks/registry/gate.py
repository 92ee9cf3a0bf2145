"""Gate: a candidate passes only above the threshold and ahead of the champion on the same test set."""

from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.gate import GatePolicy
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import DataContract, TaskType
from mlpipe.tasks.data.split import SplitRefs
from mlpipe.tasks.datasets import read_snapshot
from mlpipe.tasks.metrics import DEFAULT_PRIMARY, LOWER_IS_BETTER, is_better, meets_threshold
from mlpipe.tasks.model.evaluate import Evaluation, score
from mlpipe.tasks.registry.aliases import find_champion, find_version, rolled_back_from


class Champion(BaseModel):
    """The current champion and its score on the candidate's test set."""

    version: str
    score: float


class GateDecision(BaseModel):
    """What was compared and what was decided, with the numbers."""

    passed: bool
    metric: str
    candidate: float
    threshold: float | None
    margin: float
    champion_version: str | None = None
    champion: float | None = None
    reason: str


def primary_metric(policy: GatePolicy, task: TaskType, available: dict[str, float]) -> str:
    """The metric the gate compares; an unknown name is an error listing the known ones."""
    metric = policy.primary_metric or DEFAULT_PRIMARY[task]
    if metric not in available:
        raise ConfigError(f"gate primary_metric '{metric}' is not a {task} metric; choose one of {sorted(available)}")
    return metric


def decide(metric: str, candidate: float, policy: GatePolicy, champion: Champion | None) -> GateDecision:
    """The gate's rule, separate from any I/O so it can be tested on numbers alone."""
    decision = GateDecision(
        passed=False,
        metric=metric,
        candidate=candidate,
        threshold=policy.threshold,
        margin=policy.margin,
        champion_version=champion.version if champion else None,
        champion=champion.score if champion else None,
        reason="",
    )
    if not meets_threshold(metric, candidate, policy.threshold):
        relation = "above" if metric in LOWER_IS_BETTER else "below"
        return decision.model_copy(
            update={"reason": f"{metric} {candidate:.4f} is {relation} the threshold {policy.threshold}"}
        )
    if champion is None:
        return decision.model_copy(update={"passed": True, "reason": "no champion yet"})
    if not is_better(metric, candidate, champion.score, policy.margin):
        return decision.model_copy(
            update={
                "reason": f"{metric} {candidate:.4f} does not beat champion v{champion.version} "
                f"({champion.score:.4f}) by more than {policy.margin}"
            }
        )
    return decision.model_copy(
        update={
            "passed": True,
            "reason": f"{metric} {candidate:.4f} beats champion v{champion.version} ({champion.score:.4f})",
        }
    )


def gate(
    evaluation: Evaluation,
    splits: SplitRefs,
    contract: DataContract,
    model_name: str,
    policy: GatePolicy,
    tracking: MlflowConnection,
    store: Datastore,
) -> GateDecision:
    """Compare the candidate with the champion, scoring the champion on the candidate's test set."""
    metric = primary_metric(policy, contract.task, evaluation.metrics)
    candidate = evaluation.metrics[metric]
    if evaluation.test_hash != splits.test.content_hash:
        raise ValueError("the evaluation was made on another test set than the one the gate compares on")
    current = find_champion(model_name, tracking)
    if current is None:
        return decide(metric, candidate, policy, None)
    if current.run_id == evaluation.run_id:  # a re-run of the training that made the champion
        decision = decide(metric, candidate, policy, None)
        if not decision.passed:
            return decision
        return decision.model_copy(
            update={
                "champion_version": str(current.version),
                "champion": candidate,
                "reason": f"candidate is already champion v{current.version}",
            }
        )
    undone = _rollback_of_candidate(model_name, evaluation.run_id, tracking)
    if undone is not None:
        return decide(metric, candidate, policy, None).model_copy(update={"passed": False, "reason": undone})
    champion_uri = f"models:/{model_name}/{current.version}"
    _, champion_metrics = score(champion_uri, read_snapshot(splits.test, store), contract, tracking)
    return decide(metric, candidate, policy, Champion(version=str(current.version), score=champion_metrics[metric]))


def _rollback_of_candidate(model_name: str, run_id: str, tracking: MlflowConnection) -> str | None:
    """Why the candidate may not be promoted again: a person rolled its version back (None if nobody did).

    A cached re-run of the training that made a rolled-back version scores the same as before; the
    gate would promote it again and undo the rollback. Only a person promotes it again, by hand.
    """
    version = find_version(model_name, run_id, tracking)
    change = rolled_back_from(model_name, version, tracking) if version is not None else None
    if change is None:
        return None
    return (
        f"v{version} was rolled back by {change.by} at {change.at} ({change.reason}); it is promoted again only "
        f"by hand: mlpipe rollback {model_name} --to {version}"
    )


gate_task = pipeline_task(gate, cache_policy=NO_CACHE)
