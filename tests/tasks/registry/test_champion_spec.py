"""What a retraining takes from the champion: its model, not the hardware it happened to train on."""

from pathlib import Path

import pytest
from mlflow import MlflowClient

from mlpipe.blocks import MlflowConnection
from mlpipe.tasks.model.families import ModelSpec
from mlpipe.tasks.registry.aliases import CHAMPION
from mlpipe.tasks.registry.champion import champion_spec

pytestmark = pytest.mark.unit


def test_a_champion_trained_on_a_gpu_is_retrained_wherever_the_retraining_places_it(tmp_path: Path):
    tracking = MlflowConnection(tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}").resolve()
    client = MlflowClient(tracking.tracking_uri)
    run = client.create_run(client.create_experiment("gpu-champion"))
    for key, value in {"family": "xgboost", "seed": "7", "device": "cuda", "max_depth": "3", "task": "x"}.items():
        client.log_param(run.info.run_id, key, value)
    client.create_registered_model("gpu-model")
    version = client.create_model_version("gpu-model", f"runs:/{run.info.run_id}/model", run.info.run_id)
    client.set_registered_model_alias("gpu-model", CHAMPION, version.version)

    spec = champion_spec("gpu-model", tracking)

    # `device` said where the champion ran; the retraining's own device (auto by default) decides
    # where the challenger trains, and asks the scheduler for a GPU worker when it picks cuda.
    assert spec == ModelSpec(family="xgboost", seed=7, params={"max_depth": 3})
