"""The retraining pipeline: recent window + history → challenger → compared with the champion on a recent holdout.

The challenger keeps the champion's model family and hyperparameters and learns from the recent
window's training rows plus the history; the holdout is the recent window's test split, so
champion and challenger are judged on the same fresh rows by the training pipeline's own gate
(threshold and margin from the `GatePolicy`). The decision is recorded on both versions and
announced as `mlpipe.model.promoted` or `mlpipe.model.rejected`.
"""

import datetime as dt
from collections.abc import Mapping

import yaml
from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.events import emit_event
from pydantic import BaseModel, Field

from blocks.cluster import WorkspaceTaskRunner
from blocks.mlflow import MlflowConnection
from blocks.workspace import WorkspaceConfig
from flows.common import model_resource, open_workspace, resolve_window, scheduled_time
from flows.training import DataParams, TrainingSummary, prepare_data, train_and_register
from mlpipe.errors import ConfigError
from tasks.aliases import current_champion
from tasks.model import ModelSpec
from tasks.report import artifact_key
from tasks.split import SplitRefs, combine_task

PROMOTED = "mlpipe.model.promoted"
REJECTED = "mlpipe.model.rejected"


class RetrainingParams(DataParams):
    """`data` is the recent labelled window; `history` adds older labelled rows to learn from."""

    data: str = Field(
        description="recent labelled data (file or URL); may contain {window_start:%Y-%m-%d} and {window_end:…}, "
        "filled from the run's time (a triggered run: when the event fired)"
    )
    window_days: float = Field(default=1.0, gt=0, description="length of the recent window before the run's time")
    history: str | None = Field(default=None, description="older labelled data (file or URL) to train on too")
    reason: str = Field(default="on demand", description="why: recorded with the decision (e.g. the event)")


class RetrainingSummary(BaseModel):
    """The challenger's training run and what became of it."""

    training: TrainingSummary
    previous_champion: str | None
    promoted: bool


@flow(name="retraining", task_runner=WorkspaceTaskRunner(), validate_parameters=True)  # type: ignore[arg-type]
def retraining(params: RetrainingParams, config: WorkspaceConfig | None = None) -> RetrainingSummary:
    """Train a challenger on recent + historical data; promote it only if it beats the champion on recent data."""
    workspace = open_workspace(config)
    params = params.model_copy(update={"data": resolve_window(params.data, scheduled_time(), params.window_days)[0]})
    previous = current_champion(params.name, workspace.mlflow)
    spec = champion_spec(params.name, workspace.mlflow)
    recent = prepare_data(params, workspace)
    train = recent.splits.train
    if params.history:
        history = prepare_data(params.model_copy(update={"data": params.history}), workspace)
        parts = [history.dataset, recent.splits.train]
        train = combine_task.submit(parts, workspace.datastore, f"{params.history}+{params.data}#train").result()
    splits = SplitRefs(train=train, validation=recent.splits.validation, test=recent.splits.test)
    tags = {"mlpipe.retraining_reason": params.reason, "mlpipe.retraining_history": params.history or ""}
    training = train_and_register(recent, splits, spec, params.name, workspace, tags)
    promoted = training.gate.passed
    _record(params, workspace.mlflow, training, previous)
    resource = model_resource(params.name, training.version)
    payload = {
        "challenger": training.version,
        "champion": previous,
        "metric": training.gate.metric,
        "challenger_score": training.gate.candidate,
        "champion_score": training.gate.champion,
        "reason": training.gate.reason,
        "trigger": params.reason,
    }
    emit_event(PROMOTED if promoted else REJECTED, resource=resource, payload=payload)
    create_markdown_artifact(
        key=artifact_key(f"{params.name}-retraining"), markdown=_decision_markdown(promoted, payload)
    )
    return RetrainingSummary(training=training, previous_champion=previous, promoted=promoted)


def champion_spec(name: str, tracking: MlflowConnection) -> ModelSpec:
    """The champion's model family and hyperparameters, from its training run's parameters.

    Raises:
        ConfigError: the model has no champion to retrain.
    """
    client = tracking.client()
    version = current_champion(name, tracking)
    if version is None:
        raise ConfigError(f"model '{name}' has no champion to retrain; train one first (mlpipe train)")
    run_id = client.get_model_version(name, version).run_id
    assert run_id is not None
    logged = dict(client.get_run(run_id).data.params)
    family, seed = logged.pop("family"), int(logged.pop("seed", "42"))
    logged.pop("task", None)
    return ModelSpec(family=family, seed=seed, params={key: yaml.safe_load(value) for key, value in logged.items()})


def _record(
    params: RetrainingParams, tracking: MlflowConnection, training: TrainingSummary, previous: str | None
) -> None:
    """The decision as a tag on the challenger and on the champion it was compared with."""
    client = tracking.client()
    decision = "promoted" if training.gate.passed else "rejected"
    note = f"{decision} v{training.version} against v{previous}: {training.gate.reason} (trigger: {params.reason})"
    key = f"mlpipe.retraining.{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S%f}"
    for version in {training.version, *([previous] if previous else [])}:
        client.set_model_version_tag(params.name, version, key, note)


def _decision_markdown(promoted: bool, decision: Mapping[str, object]) -> str:
    """The decision as the Prefect UI shows it: who was compared with whom, on what, and why."""
    title = f"v{decision['challenger']} {'promoted' if promoted else 'rejected'} against v{decision['champion']}"
    rows = "\n".join(f"| {key} | {value} |" for key, value in decision.items())
    return f"# Retraining: {title}\n\n| | |\n| --- | --- |\n{rows}\n"
