"""The worker's model cache: bounded, least recently used out first, one model per tracking server and version."""

import pytest

from mlpipe.blocks import MlflowConnection
from mlpipe.tasks.registry.model_ref import LruCache, ResolvedModel, model_key

pytestmark = pytest.mark.unit


def test_the_least_recently_used_model_is_dropped_first():
    cache: LruCache[str, str] = LruCache(size=2)
    loads: list[str] = []

    def loader(name: str):
        return lambda: loads.append(name) or f"model {name}"

    assert cache.get("a", loader("a")) == "model a"
    cache.get("b", loader("b"))
    cache.get("a", loader("a"))  # used again: "b" is now the oldest
    cache.get("c", loader("c"))
    assert cache.keys() == ["a", "c"]
    cache.get("b", loader("b"))
    assert loads == ["a", "b", "c", "b"]  # "a" was loaded once while cached, "b" again after it was dropped


def test_one_version_on_two_tracking_servers_is_two_models():
    model = ResolvedModel(reference="m@champion", uri="models:/m/1", name="m", version="1", run_id=None, inputs=[])
    one = MlflowConnection(tracking_uri="http://127.0.0.1:5001")
    other = MlflowConnection(tracking_uri="http://127.0.0.1:5002")
    assert model_key(model, one, 2) != model_key(model, other, 2)
    assert model_key(model, one, 2) == model_key(model.model_copy(), MlflowConnection(tracking_uri=one.tracking_uri), 2)
    assert model_key(model, one, 2) != model_key(model.model_copy(update={"uri": "models:/m/2"}), one, 2)
