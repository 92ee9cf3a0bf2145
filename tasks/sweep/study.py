"""The optuna study behind a sweep: settings, sampler and pruner, resuming, and choosing the best trial."""

import hashlib
import json
import warnings
from collections.abc import Sequence
from typing import Literal

import optuna
from optuna.trial import FrozenTrial, TrialState
from pydantic import Field

from mlpipe.blocks.study import StudyStorage
from mlpipe.errors import ConfigError
from mlpipe.tasks.contract import TaskType
from mlpipe.tasks.metrics import DEFAULT_PRIMARY, LOWER_IS_BETTER
from mlpipe.tasks.sweep.space import SearchSpace
from mlpipe.validation import Strict

Sampler = Literal["grid", "random", "tpe"]
PrunerKind = Literal["none", "median", "halving", "hyperband", "percentile"]
Goal = Literal["maximize", "minimize"]

TASK_METRICS: dict[TaskType, tuple[str, ...]] = {
    "classification": ("accuracy", "precision", "recall", "f1", "log_loss", "roc_auc"),
    "regression": ("rmse", "mae", "r2"),
}
INTERRUPTED = "mlpipe.interrupted"
"""User attribute of a trial whose process died; its parameters are tried again."""
FINGERPRINT = "mlpipe.fingerprint"


class PrunerSpec(Strict):
    """Early termination. Steps are boosting rounds, trees or iterations (or folds with `cv`)."""

    kind: PrunerKind = "median"
    startup_trials: int = Field(default=5, ge=0, description="median/percentile: trials that finish before pruning")
    warmup_steps: int = Field(default=10, ge=0, description="median/percentile: steps a trial runs before pruning")
    interval_steps: int = Field(default=1, ge=1, description="median/percentile: steps between pruning checks")
    percentile: float = Field(default=25.0, gt=0.0, lt=100.0, description="percentile: keep trials above it")
    min_resource: int | None = Field(
        default=None, ge=1, description="halving/hyperband: first rung; default a tenth of the rounds (halving) or 1"
    )
    reduction_factor: int = Field(default=3, ge=2, description="halving/hyperband: η, the fraction kept is 1/η")

    def for_folds(self) -> "PrunerSpec":
        """With cross-validation the steps are folds: defaults that wait for ten steps would never prune."""
        unset = {"warmup_steps": 1, "min_resource": 1}
        return self.model_copy(update={k: v for k, v in unset.items() if k not in self.model_fields_set})

    def for_rounds(self, rounds: int | None) -> "PrunerSpec":
        """Successive halving's first rung at a tenth of the rounds, unless set.

        Judging at optuna's automatic first rung (1 % of the rounds) or at 10 of 300 rounds pruned
        the eventual winner of a 48-trial benchmark, a slow starter with a low learning rate.
        """
        if self.kind != "halving" or rounds is None or "min_resource" in self.model_fields_set:
            return self
        return self.model_copy(update={"min_resource": max(1, rounds // 10)})

    def build(self) -> optuna.pruners.BasePruner:
        if self.kind == "none":
            return optuna.pruners.NopPruner()
        if self.kind == "median":
            return optuna.pruners.MedianPruner(self.startup_trials, self.warmup_steps, self.interval_steps)
        if self.kind == "percentile":
            return optuna.pruners.PercentilePruner(
                self.percentile, self.startup_trials, self.warmup_steps, self.interval_steps
            )
        if self.kind == "halving":
            return optuna.pruners.SuccessiveHalvingPruner(self.min_resource or "auto", self.reduction_factor)
        return optuna.pruners.HyperbandPruner(self.min_resource or 1, reduction_factor=self.reduction_factor)


class StudySpec(Strict):
    """How trials are chosen and judged; everything that makes two sweeps the same study."""

    sampler: Sampler = "tpe"
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)
    metric: str | None = Field(default=None, description="validation metric to optimise; default by task")
    goal: Goal | None = Field(default=None, description="default: from the metric (rmse down, roc_auc up…)")
    cv: int | None = Field(default=None, ge=2, description="score by K-fold cross-validation")
    seed: int = 42

    def resolved(self, task: TaskType) -> "StudySpec":
        """A copy with the metric and goal filled in and checked against the task's metrics."""
        metric = self.metric or DEFAULT_PRIMARY[task]
        if metric not in TASK_METRICS[task]:
            raise ConfigError(f"sweep metric '{metric}' is not a {task} metric; choose one of {TASK_METRICS[task]}")
        goal = self.goal or ("minimize" if metric in LOWER_IS_BETTER else "maximize")
        pruner = self.pruner.for_folds() if self.cv else self.pruner
        return self.model_copy(update={"metric": metric, "goal": goal, "pruner": pruner})

    def sampler_for(self, space: SearchSpace, max_concurrent: int, trial_number: int) -> optuna.samplers.BaseSampler:
        """The sampler for the trial numbered `trial_number`.

        Its seed derives from the sweep's seed and the trial number, so the k-th trial draws
        the same values in a fresh process: a resumed sweep continues the sequence instead of
        starting it again (which would repeat the finished trials' configurations). The grid
        sampler keeps the sweep's seed, which fixes the order of its points; it skips visited ones.
        """
        if self.sampler == "grid":
            return optuna.samplers.GridSampler(space.grid(), seed=self.seed)
        seed = int(hashlib.sha256(f"{self.seed}:{trial_number}".encode()).hexdigest()[:8], 16)
        if self.sampler == "random":
            return optuna.samplers.RandomSampler(seed=seed)
        # Constant liar keeps parallel TPE trials from piling onto the same point. These options are
        # optuna's experimental ones, chosen here rather than by the user: its warning is not theirs to read.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return optuna.samplers.TPESampler(
                seed=seed, multivariate=True, group=space.prefixed, constant_liar=max_concurrent > 1
            )


def study_fingerprint(spec: StudySpec, space: SearchSpace, dataset_hash: str, split_seed: int) -> str:
    """What must match for a re-run to continue a study rather than start another."""
    content = json.dumps(
        {"spec": spec.model_dump(), "space": space.model_dump(), "data": dataset_hash, "split": split_seed},
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(content.encode()).hexdigest()


def open_study(name: str, storage: StudyStorage, spec: StudySpec, fingerprint: str) -> optuna.Study:
    """Create the study, or load it to resume.

    Raises:
        ConfigError: a study of that name exists for other data, space or settings.
    """
    assert spec.goal is not None
    study = optuna.create_study(
        study_name=name,
        storage=storage.open(),
        pruner=spec.pruner.build(),
        direction=spec.goal,
        load_if_exists=True,
    )
    recorded = study.user_attrs.get(FINGERPRINT)
    if recorded is None:
        study.set_user_attr(FINGERPRINT, fingerprint)
    elif recorded != fingerprint:
        raise ConfigError(
            f"study '{name}' holds trials of another dataset, search space or sweep settings; "
            "give a new --study name (or leave it out to get one derived from these inputs)"
        )
    return study


def requeue_interrupted(study: optuna.Study) -> list[FrozenTrial]:
    """Mark trials left running by a killed process as failed, and queue their parameters again.

    Only one sweep holds a study at a time (`tasks/sweep/lease`), so a trial still `RUNNING` when
    a sweep starts belongs to a process that died. Returns the trials queued again.
    """
    interrupted = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in interrupted:
        optuna.trial.Trial(study, trial._trial_id).set_user_attr(INTERRUPTED, True)
        study.tell(trial.number, state=TrialState.FAIL)
        study.enqueue_trial(trial.params, user_attrs={"mlpipe.retry_of": trial.number}, skip_if_exists=False)
    return interrupted


def fail_broken(study: optuna.Study, number: int, error: BaseException) -> None:
    """Record a trial whose task broke before it told the study how it ended as failed, with the error.

    Its worker died, or the study storage failed under it: the trial counts against `max_failed`
    and the sweep goes on, instead of the trial staying `RUNNING` until the next resume.
    """
    trial = study.get_trials(deepcopy=False)[number]
    if trial.state == TrialState.RUNNING:
        optuna.trial.Trial(study, trial._trial_id).set_user_attr("error", f"{type(error).__name__}: {error}")
        study.tell(number, state=TrialState.FAIL)


def counted(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    """Trials that used up the budget: finished ones, but not those a dead process interrupted."""
    done = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    return [t for t in trials if t.state in done and not t.user_attrs.get(INTERRUPTED)]


def failed(trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
    return [t for t in counted(trials) if t.state == TrialState.FAIL]


def best_trial(trials: Sequence[FrozenTrial], goal: Goal) -> FrozenTrial | None:
    """The completed trial with the best value in the goal's direction; ties go to the earliest trial.

    Pruned and failed trials never win: their last intermediate value is not a final score.
    """
    finished = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    if not finished:
        return None
    sign = -1.0 if goal == "maximize" else 1.0
    return min(finished, key=lambda t: (sign * float(t.value), t.number))  # type: ignore[arg-type]


def reached(value: float | None, target: float | None, goal: Goal) -> bool:
    """Whether `value` is at least as good as `target` (the AutoML `exit_score`)."""
    if value is None or target is None:
        return False
    return value >= target if goal == "maximize" else value <= target
