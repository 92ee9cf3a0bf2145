"""Register: one model version per training run, `challenger` always, `champion` only through the gate."""

from typing import TYPE_CHECKING

from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.gate import GatePolicy
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.lineage import LINEAGE_KEYS, SWEEP_KEYS
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.data.split import SplitRefs
from mlpipe.tasks.datasets import DatasetRef
from mlpipe.tasks.model.evaluate import Evaluation
from mlpipe.tasks.model.train import TrainedModel
from mlpipe.tasks.registry.aliases import CHALLENGER, compare_and_set_champion, find_version, set_challenger
from mlpipe.tasks.registry.gate import GateDecision, gate

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

RUN_DESCRIPTION = "mlflow.note.content"
"""The tag MLflow's UI shows as a run's description."""
PROMOTION_ATTEMPTS = 5
"""How many times a candidate is judged again because other writers kept moving the champion meanwhile."""


class Registration(BaseModel):
    """The registered version and the aliases it holds."""

    name: str
    version: str
    aliases: list[str]
    run_id: str


class Promotion(BaseModel):
    """The gate's last word on a registered version (judged again if the champion moved) and its aliases after it."""

    decision: GateDecision
    registration: Registration


def register(
    model: TrainedModel,
    evaluation: Evaluation,
    dataset: DatasetRef,
    model_name: str,
    tracking: MlflowConnection,
    description: str | None = None,
) -> Registration:
    """Register `model` (or find the version already registered for its run), record its lineage, make it challenger.

    A differentially private model's version is also tagged with its epsilon and where its
    bounds came from (`mlpipe.privacy.epsilon`, `mlpipe.privacy.bounds`).

    Keyed by the training run: a retry after a lost response, or a re-run whose training was
    cached, finds the existing version instead of creating a second one. `description` (the
    intended use) goes on the version and the run; a re-run with a new one updates both.
    """
    import mlflow

    client = tracking.client()
    # Lineage describes the run that trained the model, whichever flow run registered it.
    run_tags = client.get_run(model.run_id).data.tags
    tags = {
        "mlpipe.dataset_hash": dataset.content_hash,
        "mlpipe.dataset_source": dataset.source,
        "mlpipe.dataset_rows": str(dataset.rows),
        **{key: run_tags.get(key, "") for key in LINEAGE_KEYS},
        **{key: run_tags[key] for key in SWEEP_KEYS if key in run_tags},
        **{f"mlpipe.metric.{name}": f"{value:.6g}" for name, value in evaluation.metrics.items()},
        **(model.privacy.tags() if model.privacy else {}),  # epsilon, and where the bounds came from
    }
    version = find_version(model_name, model.run_id, tracking)
    if version is None:  # made with its whole record in one call (one call per tag took ≈ 0.2 s on a server)
        with tracking.session():
            registered = mlflow.register_model(model.model_uri, model_name, tags=tags)
        version = str(registered.version)
    else:
        registered = record_tags(model_name, version, tags, tracking)
    if description and registered.description != description:
        client.update_model_version(model_name, version, description=description)
        client.set_tag(model.run_id, RUN_DESCRIPTION, description)
    aliases = set(registered.aliases or [])
    if CHALLENGER not in aliases:  # a re-run of a registration that holds it already writes nothing
        set_challenger(model_name, version, tracking)
        aliases = set(client.get_model_version(model_name, version).aliases)
    return Registration(name=model_name, version=version, aliases=sorted(aliases), run_id=model.run_id)


def promote(
    registration: Registration,
    decision: GateDecision,
    *,
    evaluation: Evaluation,
    splits: SplitRefs,
    contract: DataContract,
    policy: GatePolicy,
    tracking: MlflowConnection,
    store: Datastore,
) -> Promotion:
    """Make the version champion if the gate passed it, by compare-and-set against the champion it was judged with.

    When another run moved the champion after the gate compared (two trainings at once, a
    rollback), the candidate is judged again against the new champion, so the better model wins
    whatever the order. The decision that stood is recorded on the version (never overwritten).

    Raises:
        TimeoutError: the champion kept moving while the candidate was judged (retried).
    """
    name, version = registration.name, registration.version
    for _ in range(PROMOTION_ATTEMPTS):
        if not decision.passed:
            break
        reason = f"gate: {decision.reason}"
        if compare_and_set_champion(name, version, decision.champion_version, tracking, reason, by="mlpipe gate"):
            break
        decision = gate(evaluation, splits, contract, name, policy, tracking, store)
    else:
        raise TimeoutError(f"model '{name}': the champion moved {PROMOTION_ATTEMPTS} times while v{version} was judged")
    recorded = record_tags(
        name,
        version,
        {"mlpipe.gate": "passed" if decision.passed else "rejected", "mlpipe.gate_reason": decision.reason},
        tracking,
    )
    aliases = sorted(recorded.aliases or [])  # read after the move
    return Promotion(decision=decision, registration=registration.model_copy(update={"aliases": aliases}))


def record_tags(name: str, version: str, tags: dict[str, str], tracking: MlflowConnection) -> "ModelVersion":
    """Write the tags the version lacks, never overwriting one; the version as read before (its tags excepted).

    Written on every attempt: a retry after a crash between `register_model` and tagging completes
    the record, and a re-run keeps the first record.
    """
    client = tracking.client()
    recorded = client.get_model_version(name, version)
    for key, value in tags.items():
        if key not in recorded.tags:
            client.set_model_version_tag(name, version, key, value)
    return recorded


register_task = pipeline_task(register, cache_policy=NO_CACHE)
promote_task = pipeline_task(promote, cache_policy=NO_CACHE)
