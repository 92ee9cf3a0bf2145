"""Register: one model version per training run, `challenger` always, `champion` only through the gate."""

import mlflow
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.lineage import LINEAGE_KEYS, SWEEP_KEYS
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.datasets import DatasetRef
from mlpipe.tasks.model.evaluate import Evaluation
from mlpipe.tasks.model.train import TrainedModel
from mlpipe.tasks.registry.aliases import CHALLENGER, champion_version, find_version, set_champion
from mlpipe.tasks.registry.gate import GateDecision


class Registration(BaseModel):
    """The registered version and the aliases it holds."""

    name: str
    version: str
    aliases: list[str]
    run_id: str


def register(
    model: TrainedModel,
    evaluation: Evaluation,
    decision: GateDecision,
    dataset: DatasetRef,
    model_name: str,
    tracking: MlflowConnection,
) -> Registration:
    """Register `model` (or find the version already registered for its run) and move the aliases.

    Keyed by the training run: a retry after a lost response, or a re-run whose training was
    cached, finds the existing version instead of creating a second one.
    """
    client = tracking.client()
    version = find_version(model_name, model.run_id, tracking)
    if version is None:
        with tracking.session():
            version = str(mlflow.register_model(model.model_uri, model_name).version)
    # Lineage describes the run that trained the model, whichever flow run registered it. Written
    # on every attempt, never overwritten: a retry after a crash right after `register_model`
    # completes the record, and a re-run keeps the first decision.
    run_tags = client.get_run(model.run_id).data.tags
    tags = {
        "mlpipe.dataset_hash": dataset.content_hash,
        "mlpipe.dataset_source": dataset.source,
        **{key: run_tags.get(key, "") for key in LINEAGE_KEYS},
        **{key: run_tags[key] for key in SWEEP_KEYS if key in run_tags},
        "mlpipe.gate": "passed" if decision.passed else "rejected",
        "mlpipe.gate_reason": decision.reason,
        **{f"mlpipe.metric.{name}": f"{value:.6g}" for name, value in evaluation.metrics.items()},
    }
    recorded = client.get_model_version(model_name, version).tags
    for key, value in tags.items():
        if key not in recorded:
            client.set_model_version_tag(model_name, version, key, value)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    if decision.passed and champion_version(model_name, tracking) != version:
        set_champion(model_name, version, tracking, reason=f"gate: {decision.reason}", by="mlpipe gate")
    aliases = client.get_model_version(model_name, version).aliases
    return Registration(name=model_name, version=version, aliases=sorted(aliases), run_id=model.run_id)


register_task = pipeline_task(register, cache_policy=NO_CACHE)
