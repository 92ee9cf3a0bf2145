"""Which model: `name@alias`, `name/version` or a model URI, pinned to one version and loaded once per worker."""

import threading
from typing import Any

from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.data.columns import InputColumn
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


_MODELS: dict[tuple[str, int], Any] = {}


_MODELS_LOCK = threading.Lock()


def load_model(model: ResolvedModel, tracking: MlflowConnection, threads: int) -> Any:
    """The model's python object, loaded once per worker (and per thread budget) for every batch it scores."""
    key = (model.uri, threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            import mlflow

            with tracking.session():
                loaded = mlflow.pyfunc.load_model(model.uri).unwrap_python_model()
            estimator = loaded.pipeline.steps[-1][1]
            if "n_jobs" in estimator.get_params():
                estimator.set_params(n_jobs=threads)
            _MODELS[key] = loaded
        return _MODELS[key]


resolve_task = pipeline_task(resolve_model, cache_policy=NO_CACHE)
