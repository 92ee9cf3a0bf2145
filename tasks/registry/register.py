"""Register: one model version per training run, `challenger` always, `champion` only through the gate."""

import mlflow
from mlflow.exceptions import MlflowException
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.lineage import LINEAGE_KEYS, SWEEP_KEYS
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.datasets import DatasetRef
from mlpipe.tasks.model.evaluate import Evaluation
from mlpipe.tasks.model.train import TrainedModel
from mlpipe.tasks.registry.aliases import CHALLENGER, champion_version, set_champion
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
        # Lineage describes the run that trained the model, whichever flow run registered it.
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
        for key, value in tags.items():
            client.set_model_version_tag(model_name, version, key, value)
    client.set_registered_model_alias(model_name, CHALLENGER, version)
    if decision.passed and champion_version(model_name, tracking) != version:
        set_champion(model_name, version, tracking, reason=f"gate: {decision.reason}", by="mlpipe gate")
    aliases = client.get_model_version(model_name, version).aliases
    return Registration(name=model_name, version=version, aliases=sorted(aliases), run_id=model.run_id)


def find_version(model_name: str, run_id: str, tracking: MlflowConnection) -> str | None:
    """The version already registered for this training run, if any."""
    try:
        found = tracking.client().search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return str(min(int(v.version) for v in found)) if found else None


register_task = pipeline_task(register, cache_policy=NO_CACHE)
