"""Which model: `name@alias`, `name/version` or a model URI, pinned to one version and loaded once per worker."""

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.data.columns import InputColumn
from mlpipe.tasks.model.requirements import check_requirements_quickly
from mlpipe.validation import check_name


class ResolvedModel(BaseModel):
    """A model pinned to what it is right now, so an alias moving mid-run changes nothing."""

    reference: str
    uri: str
    name: str
    version: str
    run_id: str | None
    inputs: list[InputColumn]


def resolve_model(reference: str, tracking: MlflowConnection) -> ResolvedModel:
    """Pin `reference` to a model version (or a logged model) and read its input signature.

    Raises:
        ConfigError: the model, alias or version does not exist, or the model has no signature.
    """
    from mlflow.exceptions import MlflowException

    client = tracking.client()
    name, version, run_id, uri = _parse(reference)
    try:
        if name and version is None:
            found = client.get_model_version_by_alias(name, _alias(reference))
            version, run_id = str(found.version), found.run_id
        elif name and version:
            run_id = client.get_model_version(name, version).run_id
        pinned = f"models:/{name}/{version}" if name else uri
        with tracking.session():
            from mlflow.models import get_model_info

            signature = get_model_info(pinned).signature
    except MlflowException as error:
        raise ConfigError(f"model '{reference}': {error.message}") from None
    if signature is None or signature.inputs is None:
        raise ConfigError(f"model '{reference}' has no input signature to check the data against")
    inputs = [
        InputColumn(name=str(spec.name), type=_type_name(spec.type), required=getattr(spec, "required", True))
        for spec in signature.inputs.inputs
    ]
    return ResolvedModel(
        reference=reference, uri=pinned, name=name or "", version=version or "", run_id=run_id, inputs=inputs
    )


def pin_version(reference: str, tracking: MlflowConnection) -> tuple[str, str]:
    """(name, version) of a registered version named as `NAME@ALIAS` or `NAME/VERSION`.

    Raises:
        ConfigError: a logged model's URI (it has no version), or no such model or alias.
    """
    from mlflow.exceptions import MlflowException

    name, version, *_ = _parse(reference)
    if name is None:
        raise ConfigError(f"'{reference}' is a logged model, not a registered version: give NAME@ALIAS or NAME/VERSION")
    if version is not None:
        return name, version
    try:
        return name, str(tracking.client().get_model_version_by_alias(name, _alias(reference)).version)
    except MlflowException as error:
        raise ConfigError(f"model '{reference}': {error.message}") from None


def _parse(reference: str) -> tuple[str | None, str | None, str | None, str]:
    """(name, version, run_id, uri): version None with a name means an alias to look up."""
    if reference.startswith("models:/"):
        reference = reference.removeprefix("models:/")
    elif ":/" in reference:
        return None, None, None, reference  # runs:/…, file://…, s3://…: a logged model, not a version
    if "@" in reference:
        name, version = reference.split("@", 1)[0], None
    else:
        name, sep, version = reference.rpartition("/")
        if not sep or not name or not version.isdigit():
            raise ConfigError(f"--model '{reference}': expected NAME@ALIAS, NAME/VERSION or an MLflow model URI")
    try:
        check_name(name)
    except ValueError as error:
        raise ConfigError(f"--model '{reference}': {error}") from None
    return name, version, None, ""


def _alias(reference: str) -> str:
    return reference.removeprefix("models:/").split("@", 1)[1]


def _type_name(data_type: Any) -> str:
    return str(getattr(data_type, "name", data_type))


MODEL_CACHE_SIZE = 4
"""Loaded models one worker process keeps: enough for a champion, a challenger and a drift check's model."""

Key = TypeVar("Key", bound=Hashable)
Value = TypeVar("Value")


class LruCache(Generic[Key, Value]):
    """At most `size` values, the least recently used dropped first; each value is made once, under a lock.

    Threads of one worker share it: a second caller of the same key waits for the first load
    instead of loading the model twice.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._values: OrderedDict[Key, Value] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Key, make: Callable[[], Value]) -> Value:
        with self._lock:
            if key in self._values:
                self._values.move_to_end(key)
                return self._values[key]
            value = make()
            self._values[key] = value
            while len(self._values) > self.size:
                self._values.popitem(last=False)
            return value

    def keys(self) -> list[Key]:
        """Least recently used first."""
        with self._lock:
            return list(self._values)


ModelKey = tuple[str | None, str | None, str, int]
"""Tracking URI, registry URI, pinned model URI, threads."""

_MODELS: LruCache[ModelKey, Any] = LruCache(MODEL_CACHE_SIZE)


def model_key(
    model: ResolvedModel, tracking: MlflowConnection, threads: int
) -> tuple[str | None, str | None, str, int]:
    """Which loaded model: the servers (one `models:/name/1` per tracking server), the pinned version, the threads."""
    resolved = tracking.resolve()
    return resolved.tracking_uri, resolved.registry_uri, model.uri, threads


def load_model(model: ResolvedModel, tracking: MlflowConnection, threads: int) -> Any:
    """The model's python object, loaded once per worker (and per thread budget) for every batch it scores."""

    def load() -> Any:
        import mlflow

        check_requirements_quickly()
        with tracking.session():
            loaded = mlflow.pyfunc.load_model(model.uri).unwrap_python_model()
        estimator = loaded.pipeline.steps[-1][1]
        if "n_jobs" in estimator.get_params():
            estimator.set_params(n_jobs=threads)
        return loaded

    return _MODELS.get(model_key(model, tracking, threads), load)


resolve_task = pipeline_task(resolve_model, cache_policy=NO_CACHE)
