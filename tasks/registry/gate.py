"""Gate: a candidate passes only above the threshold, within the fairness limit, and ahead of the champion
on the same test set."""

from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.gate import FairnessLimit, GatePolicy
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import DataContract, TaskType
from mlpipe.tasks.data.split import SplitRefs
from mlpipe.tasks.metrics import DEFAULT_PRIMARY, LOWER_IS_BETTER, is_better, meets_threshold
from mlpipe.tasks.model.evaluate import Evaluation, score
from mlpipe.tasks.model.fairness import Disparity, FairnessReport
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
    fairness_limit: FairnessLimit | None = None
    fairness: dict[str, float] | None = None
    """The limited difference on each sensitive column it applies to (None without a fairness limit)."""


def primary_metric(policy: GatePolicy, task: TaskType, available: dict[str, float]) -> str:
    """The metric the gate compares; an unknown name is an error listing the known ones."""
    metric = policy.primary_metric or DEFAULT_PRIMARY[task]
    if metric not in available:
        raise ConfigError(f"gate primary_metric '{metric}' is not a {task} metric; choose one of {sorted(available)}")
    return metric


def require_sensitive(limit: FairnessLimit | None, sensitive: list[str]) -> None:
    """Before any step: a fairness limit needs sensitive columns to measure, and limits only those.

    Raises:
        ConfigError: a limit with no sensitive column, or naming a column that is not one.
    """
    if limit is None:
        return
    if not sensitive:
        raise _needs_sensitive(limit)
    unknown = sorted(set(limit.columns or []) - set(sensitive))
    if unknown:
        raise ConfigError(f"gate.fairness.columns {unknown} are not sensitive columns of the training ({sensitive})")


def _needs_sensitive(limit: FairnessLimit) -> ConfigError:
    return ConfigError(
        f"gate.fairness limits {limit.metric}, but the training names no sensitive column: "
        "pass --sensitive COLUMN (or `sensitive: [COLUMN]` in the config file's training section)"
    )


def require_binary(limit: FairnessLimit | None, contract: DataContract, model_name: str) -> None:
    """Before training, once the contract is known: differences of selection and error rates need a positive class.

    Raises:
        ConfigError: a fairness limit on a regression or on a classifier of more than two classes.
    """
    if limit is None:
        return
    classes = contract.column(contract.target).allowed_values if contract.task == "classification" else None
    if contract.task == "regression" or (classes is not None and len(classes) != 2):
        what = "a regression" if contract.task == "regression" else f"a classifier of {len(classes or [])} classes"
        raise ConfigError(
            f"gate.fairness: {limit.metric} is measured on binary classifiers only; model {model_name} is {what} "
            "(its group metrics are still reported)"
        )


def limited_disparities(limit: FairnessLimit | None, report: FairnessReport | None) -> dict[str, Disparity]:
    """The limit's difference on each sensitive column it applies to, by column (none without a limit).

    Raises:
        ConfigError: the report lacks a column or a difference the limit needs.
    """
    if limit is None:
        return {}
    if report is None:
        raise _needs_sensitive(limit)
    disparities = {}
    for name in limit.columns or [column.column for column in report.columns]:
        column = report.column(name)
        if column is None:
            raise ConfigError(f"gate.fairness.columns: '{name}' is not a sensitive column of the training")
        if limit.metric not in column.differences:
            raise ConfigError(f"gate.fairness: {limit.metric} is measured on binary classifiers only")
        disparities[name] = column.differences[limit.metric]
    return disparities


def decide(
    metric: str,
    candidate: float,
    policy: GatePolicy,
    champion: Champion | None,
    fairness: FairnessReport | None = None,
) -> GateDecision:
    """The gate's rule, separate from any I/O so it can be tested on numbers alone.

    A candidate above the fairness limit on any sensitive column fails whatever the champion scores.
    """
    disparities = limited_disparities(policy.fairness, fairness)
    decision = GateDecision(
        passed=False,
        metric=metric,
        candidate=candidate,
        threshold=policy.threshold,
        margin=policy.margin,
        champion_version=champion.version if champion else None,
        champion=champion.score if champion else None,
        reason="",
        fairness_limit=policy.fairness,
        fairness={name: d.value for name, d in disparities.items()} if policy.fairness else None,
    )
    if not meets_threshold(metric, candidate, policy.threshold):
        relation = "above" if metric in LOWER_IS_BETTER else "below"
        return decision.model_copy(
            update={"reason": f"{metric} {candidate:.4f} is {relation} the threshold {policy.threshold}"}
        )
    unfair = _above_limit(policy.fairness, disparities)
    if unfair:
        return decision.model_copy(update={"reason": unfair})
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


def _above_limit(limit: FairnessLimit | None, disparities: dict[str, Disparity]) -> str | None:
    """Why the candidate breaks the fairness limit (the column furthest above it), or None when it keeps it."""
    if limit is None:
        return None
    above = {name: disparity for name, disparity in disparities.items() if disparity.value > limit.max}
    if not above:
        return None
    name, worst = max(above.items(), key=lambda item: item[1].value)
    return f"{limit.metric} on '{name}' is {worst.value:.4f} ({worst.describe()}), above the limit {limit.max}"


def gate(
    evaluation: Evaluation,
    splits: SplitRefs,
    contract: DataContract,
    model_name: str,
    policy: GatePolicy,
    tracking: MlflowConnection,
    store: Datastore,
) -> GateDecision:
    """Compare the candidate with the champion, scoring the champion on the candidate's test set; hold the
    candidate to the fairness limit on the group metrics its evaluation measured."""
    metric = primary_metric(policy, contract.task, evaluation.metrics)
    candidate = evaluation.metrics[metric]
    if evaluation.test_hash != splits.test.content_hash:
        raise ValueError("the evaluation was made on another test set than the one the gate compares on")
    fairness = evaluation.fairness
    current = find_champion(model_name, tracking)
    if current is None:
        return decide(metric, candidate, policy, None, fairness)
    if current.run_id == evaluation.run_id:  # a re-run of the training that made the champion
        decision = decide(metric, candidate, policy, None, fairness)
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
        return decide(metric, candidate, policy, None, fairness).model_copy(update={"passed": False, "reason": undone})
    champion_uri = f"models:/{model_name}/{current.version}"
    champion_metrics = score(champion_uri, splits.test, contract, tracking, store)
    champion = Champion(version=str(current.version), score=champion_metrics[metric])
    return decide(metric, candidate, policy, champion, fairness)


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
