"""Which device a model trains on, and what its task asks the scheduler for: decided before any work is submitted."""

import dask
import pytest

from mlpipe.errors import ConfigError
from mlpipe.flows.common import placed, resolve_device
from mlpipe.tasks.model.families import ModelSpec

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("device", "gpus", "chosen"),
    [("cpu", 0, "cpu"), ("cpu", 2, "cpu"), ("auto", 0, "cpu"), ("auto", 1, "cuda"), ("cuda", 1, "cuda")],
)
def test_device_resolves_against_the_gpu_workers_of_the_cluster(device: str, gpus: int, chosen: str):
    assert resolve_device(device, gpus) == chosen  # type: ignore[arg-type]


def test_cuda_on_a_cluster_without_gpu_workers_is_an_error_saying_how_to_start_one():
    with pytest.raises(ConfigError, match=r"no Dask worker advertises the GPU resource .*--resources GPU=1"):
        resolve_device("cuda", 0)


def test_xgboost_on_cuda_asks_for_a_gpu_and_trains_with_device_cuda():
    spec, placement = placed(ModelSpec(family="xgboost", params={"max_depth": 3}), "cuda")
    assert spec.params == {"device": "cuda", "max_depth": 3}
    with placement:
        assert dask.get_annotations() == {"resources": {"GPU": 1}}
    assert dask.get_annotations() == {}


def test_a_device_the_user_set_wins_and_cpu_changes_nothing():
    assert placed(ModelSpec(family="xgboost", params={"device": "cuda:1"}), "cuda")[0].params == {"device": "cuda:1"}
    spec = ModelSpec(family="xgboost")
    cpu_spec, placement = placed(spec, "cpu")
    with placement:
        assert cpu_spec == spec and dask.get_annotations() == {}


def test_families_without_a_gpu_implementation_train_as_they_are_anywhere():
    spec = ModelSpec(family="random_forest", params={"max_depth": 4})
    same, placement = placed(spec, "cuda")
    with placement:
        assert same == spec and dask.get_annotations() == {}
