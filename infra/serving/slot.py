"""Which versions answer: the champion (and the challenger to shadow), loaded beside the old and swapped atomically.

A request takes `slot.champion` once and uses that object to the end, so a swap never changes
the model under a request in flight, and the old version is dropped only when the last request
holding it finishes (Python's reference counting). The registry is polled every `poll_seconds`;
a `mlpipe.model.promoted` event (when a Prefect API is configured) wakes the poll at once.
A failed load or registry call keeps the current version serving and is tried again next poll.
"""

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from mlpipe.infra.serving.inputs import RowSchema
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.model.pyfunc import TabularModel, predict_frame
from mlpipe.tasks.model.requirements import check_requirements_quickly
from mlpipe.tasks.registry.aliases import CHALLENGER, find_alias
from mlpipe.tasks.registry.champion import run_contract
from mlpipe.tasks.registry.model_ref import ResolvedModel, resolve_model

log = logging.getLogger("mlpipe.serve")


@dataclass(frozen=True)
class ServedModel:
    """One loaded version: what it takes, its contract and how it predicts."""

    name: str
    version: str
    run_id: str | None
    contract: DataContract | None
    rows: RowSchema
    predict: Callable[[pd.DataFrame], pd.DataFrame]
    signature: dict[str, Any]


def load_served(resolved: ResolvedModel, tracking: MlflowConnection) -> ServedModel:
    """Load a version once; predictions call mlpipe's pipeline directly, skipping MLflow's per-call conversions.

    The pyfunc's `predict` is exactly `predict_frame` on the pipeline (tasks/model/pyfunc.py), so the
    answers are the same; a model logged some other way is called through MLflow's pyfunc.
    """
    import mlflow

    check_requirements_quickly()
    with tracking.session():
        loaded = mlflow.pyfunc.load_model(resolved.uri)
        contract = _contract(resolved.run_id, tracking)
    inner = loaded.unwrap_python_model() if _is_python_model(loaded) else None
    predict: Callable[[pd.DataFrame], pd.DataFrame]
    if isinstance(inner, TabularModel):
        estimator = inner.pipeline.steps[-1][1]
        if "n_jobs" in estimator.get_params():
            estimator.set_params(n_jobs=1)  # one request, one core: concurrency comes from requests
        pipeline, task, classes = inner.pipeline, inner.task, inner.classes
        predict = lambda rows: predict_frame(pipeline, task, classes, rows)  # noqa: E731
    else:
        predict = lambda rows: pd.DataFrame(loaded.predict(rows))  # noqa: E731
    signature = loaded.metadata.signature.to_dict() if loaded.metadata.signature else {}
    return ServedModel(
        name=resolved.name or resolved.uri,
        version=resolved.version,
        run_id=resolved.run_id,
        contract=contract,
        rows=RowSchema(resolved.inputs, contract),
        predict=predict,
        signature=signature,
    )


def _is_python_model(loaded: Any) -> bool:
    try:
        loaded.unwrap_python_model()
    except (ValueError, AttributeError):
        return False
    return True


def _contract(run_id: str | None, tracking: MlflowConnection) -> DataContract | None:
    """The contract the run stored; None for a model trained outside mlpipe (the signature alone checks rows)."""
    from mlflow.exceptions import MlflowException

    if run_id is None:
        return None
    try:
        return run_contract(run_id, tracking)
    except (MlflowException, OSError):
        return None


class ModelSlot:
    """The versions serving now, and the thread that follows the registry's aliases."""

    def __init__(self, reference: str, tracking: MlflowConnection, shadow: bool, poll_seconds: float) -> None:
        self.reference = reference
        self.tracking = tracking
        self.shadow = shadow
        self.poll_seconds = poll_seconds
        self.champion: ServedModel | None = None
        self.challenger: ServedModel | None = None
        self.on_swap: Callable[[ServedModel], None] = lambda served: None
        self.wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._follow, name="mlpipe-serve-registry", daemon=True)
        self.name, self.alias = followed_alias(reference)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.wake.set()
        self._thread.join(timeout=10)

    def refresh(self) -> None:
        """Load the version each followed alias points at now, if it is not the one loaded."""
        champion = self._load_if_moved(self.champion, self.reference)
        if champion is not None:
            previous = self.champion
            self.champion = champion  # one reference assignment: atomic for every request thread
            self.on_swap(champion)
            log.info("serving %s version %s (was %s)", champion.name, champion.version, _version(previous))
        if self.shadow and self.name:
            if find_alias(self.name, CHALLENGER, self.tracking) is None:
                self.challenger = None
                return
            challenger = self._load_if_moved(self.challenger, f"{self.name}@{CHALLENGER}")
            if challenger is not None:
                self.challenger = challenger
                log.info("shadowing with %s version %s", challenger.name, challenger.version)

    def _load_if_moved(self, loaded: ServedModel | None, reference: str) -> ServedModel | None:
        if loaded is not None:
            if self.alias is None:
                return None  # a pinned version never moves
            holder = find_alias(self.name, followed_alias(reference)[1] or "", self.tracking)
            if holder is None or str(holder.version) == loaded.version:
                return None
        return load_served(resolve_model(reference, self.tracking), self.tracking)

    def _follow(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception as error:  # noqa: BLE001 - the loaded version keeps serving; tried again next poll
                log.warning(
                    "following %s failed (still serving %s): %s", self.reference, _version(self.champion), error
                )
            self.wake.wait(self.poll_seconds)
            self.wake.clear()


def _version(served: ServedModel | None) -> str:
    return served.version if served else "none"


def followed_alias(reference: str) -> tuple[str, str | None]:
    """(name, alias) of `NAME@ALIAS`; (name, None) for `NAME/VERSION`.

    Raises:
        ConfigError: anything else (a run or file URI has no registry aliases to follow).
    """
    text = reference.removeprefix("models:/")
    if "@" in text:
        name, alias = text.split("@", 1)
        return name, alias
    name, sep, version = text.rpartition("/")
    if sep and name and version.isdigit() and ":/" not in reference:
        return name, None
    raise ConfigError(f"--model {reference!r}: expected NAME@ALIAS or NAME/VERSION of a registered model")
