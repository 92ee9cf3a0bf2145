"""The retraining pipeline: recent window + history → challenger → compared with the champion on a recent holdout.

The challenger keeps the champion's model family and hyperparameters and learns from the recent
window's training rows plus the history (less any history rows the holdout also holds); the
holdout is the recent window's test split, so champion and challenger are judged on the same
fresh rows, unseen by both, by the training pipeline's own gate (threshold, margin and fairness limit
from the `GatePolicy`; the groups are the champion's sensitive columns unless others are given). The
decision is recorded on both versions and announced as `mlpipe.model.promoted` or
`mlpipe.model.rejected`. How the challenger being replaced did on live traffic (shadowed by
`mlpipe serve`, captured) is reported first.
"""

from pydantic import BaseModel, Field

from mlpipe.blocks.workspace import WorkspaceConfig
from mlpipe.flows.common import (
    Device,
    WindowTemplate,
    open_workspace,
    pipeline_flow,
    resolve_window,
    scheduled_time,
)
from mlpipe.flows.training import DataParams, TrainingSummary, prepare_data, train_and_register
from mlpipe.tasks.data.holdout import without_holdout_rows_task
from mlpipe.tasks.data.split import SplitRefs, combine_task
from mlpipe.tasks.events import MODEL_PROMOTED, MODEL_REJECTED, emit
from mlpipe.tasks.monitoring.shadow import ShadowSummary, challenger_traffic_task
from mlpipe.tasks.registry.aliases import find_champion
from mlpipe.tasks.registry.champion import champion_sensitive_task, champion_spec_task
from mlpipe.tasks.registry.report import RetrainingDecision, record_retraining_task


class RetrainingParams(DataParams):
    """`data` is the recent labelled window; `history` adds older labelled rows to learn from."""

    data: WindowTemplate = Field(
        description="recent labelled data (file or URL); may contain {window_start:%Y-%m-%d} and {window_end:…}, "
        "filled from the run's time (a triggered run: when the event fired)"
    )
    window_days: float = Field(default=1.0, gt=0, description="length of the recent window before the run's time")
    history: str | None = Field(default=None, description="older labelled data (file or URL) to train on too")
    reason: str = Field(default="on demand", description="why: recorded with the decision (e.g. the event)")
    device: Device = Field(
        default="auto", description="cuda: xgboost on a GPU worker; auto: cuda if the cluster has one; cpu"
    )


class RetrainingSummary(BaseModel):
    """The challenger's training run and what became of it."""

    training: TrainingSummary
    previous_champion: str | None
    promoted: bool
    history_rows_removed: int = 0
    """History rows left out of training because the recent holdout holds them too."""
    replaced_challenger: ShadowSummary | None = None
    """How the challenger this run replaces did on live traffic, shadowing the champion (`mlpipe serve`)."""


@pipeline_flow("retraining")
def retraining(params: RetrainingParams, config: WorkspaceConfig | None = None) -> RetrainingSummary:
    """Train a challenger on recent + historical data; promote it only if it beats the champion on recent data."""
    workspace = open_workspace(config)
    params = params.model_copy(update={"data": resolve_window(params.data, scheduled_time(), params.window_days)[0]})
    champion = find_champion(params.name, workspace.mlflow)
    previous = str(champion.version) if champion else None
    replaced = challenger_traffic_task.submit(params.name, workspace.datastore, workspace.mlflow).result()
    spec = champion_spec_task.submit(params.name, workspace.mlflow).result()
    if not params.sensitive:  # the champion's: the challenger is measured, and gated, on the same groups
        params = params.model_copy(
            update={"sensitive": champion_sensitive_task.submit(params.name, workspace.mlflow).result()}
        )
    recent = prepare_data(params, workspace)
    train, removed = recent.splits.train, 0
    if params.history:
        history = prepare_data(params.model_copy(update={"data": params.history}), workspace)
        kept = without_holdout_rows_task.submit(history.dataset, recent.splits.test, workspace.datastore).result()
        parts, removed = [kept.dataset, recent.splits.train], kept.removed
        train = combine_task.submit(parts, workspace.datastore, f"{params.history}+{params.data}#train").result()
    splits = SplitRefs(train=train, validation=recent.splits.validation, test=recent.splits.test)
    tags = {
        "mlpipe.retraining_reason": params.reason,
        "mlpipe.retraining_history": params.history or "",
        "mlpipe.retraining_history_removed": str(removed),
    }
    training = train_and_register(
        recent,
        splits,
        spec,
        params.name,
        workspace,
        tags,
        device=params.device,
        description=champion.description if champion else None,  # the same model, for the same use
    )
    decision = RetrainingDecision.of(params.name, training.version, training.gate, previous, params.reason)
    record_retraining_task.submit(decision, workspace.mlflow).result()
    emit(MODEL_PROMOTED if decision.promoted else MODEL_REJECTED, params.name, training.version, decision.payload())
    return RetrainingSummary(
        training=training,
        previous_champion=previous,
        promoted=decision.promoted,
        history_rows_removed=removed,
        replaced_challenger=replaced,
    )
