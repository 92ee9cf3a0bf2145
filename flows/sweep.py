"""The sweep pipeline: prepare data → run trials in parallel on Dask → pick the best → train, gate, register.

HyperDrive and AutoML in one flow: optuna chooses each trial's hyperparameters (grid, random or
TPE) and stops poor trials early (median, percentile, successive halving, Hyperband); trials
are Prefect tasks on the Dask cluster, at most `max_concurrent` at a time; the winner is
retrained on train + validation by the training pipeline's own tasks and goes through the
same gate and registry as any training run.
"""

import hashlib
import time
from typing import Literal

import optuna
from prefect.futures import PrefectFuture, as_completed
from pydantic import BaseModel, Field

from mlpipe.blocks.workspace import WorkspaceConfig
from mlpipe.errors import MlpipeError
from mlpipe.flows.common import (
    Device,
    cluster_capacity,
    note_cpu_only,
    open_workspace,
    pipeline_flow,
    placed,
    resolve_device,
    threads_per_task,
)
from mlpipe.flows.training import DataParams, PreparedData, TrainingSummary, prepare_data, train_and_register
from mlpipe.tasks.data.split import SplitRefs, combine_task
from mlpipe.tasks.model.families import GPU_FAMILIES
from mlpipe.tasks.sweep.lease import StudyLease, hold_study
from mlpipe.tasks.sweep.results import SweepResult, SweepRun, SweepTiming, finish_sweep_task, start_sweep_task
from mlpipe.tasks.sweep.space import SearchSpace, auto_space
from mlpipe.tasks.sweep.study import (
    StudySpec,
    best_trial,
    counted,
    fail_broken,
    failed,
    reached,
    study_fingerprint,
)
from mlpipe.tasks.sweep.trial import TrialData, TrialOutcome, TrialRequest, trial_task
from mlpipe.validation import Name


class SweepParams(DataParams):
    """What to search, how, and within which limits: rendered as a form in the Prefect UI."""

    space: SearchSpace | Literal["auto"] = Field(default="auto", description="'auto' searches five model families")
    study: StudySpec = Field(default_factory=StudySpec)
    study_name: Name | None = Field(default=None, description="default: the model name and a hash of the inputs")
    max_trials: int = Field(default=20, ge=1, description="trials in the study (finished ones count on resume)")
    max_concurrent: int | None = Field(default=None, ge=1, description="default: the cluster's worker threads")
    max_failed: int = Field(default=5, ge=1, description="the sweep stops and fails after this many failed trials")
    timeout: float | None = Field(default=None, gt=0, description="seconds; no trial starts after that")
    trial_timeout: float | None = Field(default=None, gt=0, description="seconds; a longer trial is failed")
    report_every: int = Field(default=5, ge=1, description="boosting rounds between reports (pruning checks)")
    threads_per_trial: int | None = Field(default=None, ge=1, description="default: cores / max_concurrent")
    exit_score: float | None = Field(default=None, description="stop starting trials once the best reaches it")
    device: Device = Field(
        default="cpu",
        description="cuda: xgboost trials and the winner on GPU workers; auto: cuda if the cluster has one",
    )
    wait_for_study: float = Field(
        default=0.0, ge=0, description="seconds to wait while another sweep holds the study; default: fail at once"
    )


class SweepPlan(BaseModel):
    """The sweep's settings resolved against the data and the cluster, checked before any trial runs."""

    study_name: str
    space: SearchSpace
    spec: StudySpec
    fingerprint: str
    max_trials: int
    max_concurrent: int
    threads: int
    device: Literal["cpu", "cuda"]


class SweepSummary(BaseModel):
    """What a sweep found and what became of its winner."""

    sweep: SweepResult
    training: TrainingSummary
    parent_run_id: str
    resumed_trials: list[int]


@pipeline_flow("sweep", trim_worker_memory=False)  # many short fits of a sample: see DaskCluster.trims_worker_memory
def sweep(params: SweepParams, config: WorkspaceConfig | None = None) -> SweepSummary:
    """Search hyperparameters in parallel, then train, gate and register the best configuration."""
    workspace = open_workspace(config)
    data = prepare_data(params, workspace)
    plan = plan_sweep(params, data)
    combined = combine_task.submit(
        [data.splits.train, data.splits.validation], workspace.datastore, f"{data.dataset.source}#train+validation"
    ).result()
    with hold_study(workspace.studies, plan.study_name, params.wait_for_study) as lease:
        run = start_sweep_task.submit(
            plan.study_name,
            params.name,
            plan.spec,
            plan.space,
            plan.fingerprint,
            workspace.studies,
            workspace.mlflow,
        ).result()
        started = time.monotonic()
        trial_data = TrialData(splits=data.splits, combined=combined)
        outcomes = run_trials(plan, params, run, trial_data, data, workspace, lease)
        timing = SweepTiming(
            wall_seconds=time.monotonic() - started, trial_seconds=sum(o.finished - o.started for o in outcomes)
        )
        lease.check()
        result = finish_sweep_task.submit(
            run, plan.spec, plan.space, timing, workspace.studies, workspace.mlflow
        ).result()
    # The winner learns from every row the trials could see; the test split stays unseen for the gate.
    final_splits = SplitRefs(train=combined, validation=data.splits.validation, test=data.splits.test)
    tags = {
        "mlflow.parentRunId": run.parent_run_id,
        "mlpipe.sweep_run_id": run.parent_run_id,
        "mlpipe.sweep_study": run.study,
        "mlpipe.sweep_trial": str(result.best_trial),
    }
    training = train_and_register(data, final_splits, result.best_spec, params.name, workspace, tags, plan.device)
    return SweepSummary(sweep=result, training=training, parent_run_id=run.parent_run_id, resumed_trials=run.requeued)


def plan_sweep(params: SweepParams, data: PreparedData) -> SweepPlan:
    """Resolve the space, metric, study name and concurrency; every error here precedes the first trial."""
    task = data.contract.task
    space = auto_space(task) if params.space == "auto" else params.space
    space.check(task)
    spec = params.study.resolved(task)
    if not spec.cv:
        spec = spec.model_copy(update={"pruner": spec.pruner.for_rounds(space.fewest_rounds())})
    max_trials = params.max_trials
    if spec.sampler == "grid":
        max_trials = min(max_trials, space.grid_size())
    threads, gpus = cluster_capacity()
    device = resolve_device(params.device, gpus)
    note_cpu_only(space.families, device)
    on_gpus = device == "cuda" and set(space.families) <= GPU_FAMILIES  # every trial waits for a GPU
    max_concurrent = params.max_concurrent or (gpus if on_gpus else threads)
    fingerprint = study_fingerprint(spec, space, data.dataset.content_hash, params.split.seed)
    name = params.study_name or f"{params.name}-{hashlib.sha256(fingerprint.encode()).hexdigest()[:10]}"
    return SweepPlan(
        study_name=name,
        space=space,
        spec=spec,
        fingerprint=fingerprint,
        max_trials=max_trials,
        max_concurrent=max_concurrent,
        threads=params.threads_per_trial or threads_per_task(max_concurrent),
        device=device,
    )


def run_trials(
    plan: SweepPlan,
    params: SweepParams,
    run: SweepRun,
    data: TrialData,
    prepared: PreparedData,
    workspace: WorkspaceConfig,
    lease: StudyLease,
) -> list[TrialOutcome]:
    """Ask the study for trials and keep at most `max_concurrent` of them running on the cluster.

    Trials are asked here, in one place, so a seeded sampler gives the same sequence each time;
    each trial reports to and finishes in the shared study storage from its worker. No trial
    starts once the budget (finished trials, resumed runs included), the time limit or the exit
    score is reached; the sweep fails once `max_failed` trials have failed, and stops before the
    next trial if it lost its hold on the study. A trial whose task broke counts as failed.
    """
    assert plan.spec.goal is not None and plan.spec.metric is not None
    study = optuna.load_study(study_name=plan.study_name, storage=workspace.studies.open())
    started = time.monotonic()
    running: dict[PrefectFuture[TrialOutcome], int] = {}  # → trial number
    outcomes: list[TrialOutcome] = []
    while True:
        trials = study.get_trials(deepcopy=False)
        best = best_trial(trials, plan.spec.goal)
        stop = (
            len(counted(trials)) + len(running) >= plan.max_trials
            or len(failed(trials)) >= params.max_failed
            or (params.timeout is not None and time.monotonic() - started > params.timeout)
            or reached(best.value if best else None, params.exit_score, plan.spec.goal)
        )
        if not stop and len(running) < plan.max_concurrent:
            lease.check()
            future, number = _submit(study, plan, params, run, data, prepared, workspace)
            running[future] = number
            continue
        if not running:
            break
        done = next(as_completed(list(running)))
        number = running.pop(done)
        try:
            outcomes.append(done.result())
        except Exception as error:  # noqa: BLE001 - the trial failed; the sweep goes on (max_failed decides)
            fail_broken(study, number, error)
    broken = failed(study.get_trials(deepcopy=False))
    if len(broken) >= params.max_failed:
        errors = "; ".join(f"trial {t.number}: {t.user_attrs.get('error')}" for t in broken[-3:])
        raise MlpipeError(f"sweep '{plan.study_name}' stopped: {len(broken)} trials failed (max_failed). {errors}")
    return outcomes


def _submit(
    study: optuna.Study,
    plan: SweepPlan,
    params: SweepParams,
    run: SweepRun,
    data: TrialData,
    prepared: PreparedData,
    workspace: WorkspaceConfig,
) -> tuple[PrefectFuture[TrialOutcome], int]:
    study.sampler = plan.spec.sampler_for(plan.space, plan.max_concurrent, len(study.get_trials(deepcopy=False)))
    trial = study.ask()
    spec, placement = placed(plan.space.suggest(trial, plan.spec.seed), plan.device)
    request = TrialRequest(
        study=plan.study_name,
        storage=workspace.studies,
        trial_id=trial._trial_id,
        number=trial.number,
        spec=spec,
        metric=plan.spec.metric or "",
        pruner=plan.spec.pruner,
        cv=plan.spec.cv,
        report_every=params.report_every,
        timeout=params.trial_timeout,
        threads=plan.threads,
        experiment_id=run.experiment_id,
        parent_run_id=run.parent_run_id,
    )
    with placement:
        return trial_task.submit(request, data, prepared.contract, workspace.mlflow, workspace.datastore), trial.number
