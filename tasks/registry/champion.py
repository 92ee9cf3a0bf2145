"""What the champion was trained with: its data contract, its model settings and its sensitive columns, read
back from its run.

Retraining holds new data to the champion's contract and trains the challenger with the
champion's family and hyperparameters; both come from the registry, never from configuration.
"""

import json

import yaml
from prefect.cache_policies import NO_CACHE

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.model.fairness import SENSITIVE_TAG
from mlpipe.tasks.model.families import ModelSpec
from mlpipe.tasks.model.train import CONTRACT_ARTIFACT
from mlpipe.tasks.registry.aliases import find_champion


def champion_contract(model_name: str, tracking: MlflowConnection) -> DataContract | None:
    """The contract stored with the current champion, if there is one."""
    champion = find_champion(model_name, tracking)
    if champion is None or champion.run_id is None:
        return None
    return run_contract(champion.run_id, tracking)


def run_contract(run_id: str, tracking: MlflowConnection) -> DataContract:
    """The contract a training run stored with its model."""
    import mlflow

    with tracking.session():
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{CONTRACT_ARTIFACT}")
    return DataContract.model_validate_json(text)


def champion_spec(model_name: str, tracking: MlflowConnection) -> ModelSpec:
    """The champion's model family and hyperparameters, from its training run's parameters.

    Raises:
        ConfigError: the model has no champion to retrain.
    """
    champion = find_champion(model_name, tracking)
    if champion is None or champion.run_id is None:
        raise ConfigError(f"model '{model_name}' has no champion to retrain; train one first (mlpipe train)")
    logged = dict(tracking.client().get_run(champion.run_id).data.params)
    family, seed = logged.pop("family"), int(logged.pop("seed", "42"))
    logged.pop("task", None)
    logged.pop("device", None)  # where the champion trained, not what it is: the retraining places its own
    return ModelSpec(family=family, seed=seed, params={key: yaml.safe_load(value) for key, value in logged.items()})


def champion_sensitive(model_name: str, tracking: MlflowConnection) -> list[str]:
    """The sensitive columns the champion's evaluation reported on (none without a champion or a report)."""
    champion = find_champion(model_name, tracking)
    if champion is None or champion.run_id is None:
        return []
    tag = tracking.client().get_run(champion.run_id).data.tags.get(SENSITIVE_TAG)
    return [str(name) for name in json.loads(tag)] if tag else []


champion_contract_task = pipeline_task(champion_contract, cache_policy=NO_CACHE)
champion_spec_task = pipeline_task(champion_spec, cache_policy=NO_CACHE)
champion_sensitive_task = pipeline_task(champion_sensitive, cache_policy=NO_CACHE)
