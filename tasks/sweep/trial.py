"""One sweep trial: fit a candidate, report its validation score as it trains, and record it.

A trial reports its validation metric while it trains (every few boosting rounds for xgboost,
every tenth of the trees or iterations for forests and histogram boosting, after each fold
with cross-validation), so the study's pruner can stop a poor trial early. A trial that fails
or runs past its time limit is recorded as failed; the sweep goes on.
"""

import threading
import time
from collections.abc import Callable
from contextlib import suppress
from typing import Any, Literal

import numpy as np
import optuna
import pandas as pd
from mlflow.entities import Metric, Param, RunStatus, RunTag
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel
from sklearn.base import BaseEstimator
from sklearn.model_selection import KFold, StratifiedKFold
from threadpoolctl import threadpool_limits
from xgboost import XGBModel
from xgboost.callback import TrainingCallback

from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.blocks.study import StudyStorage
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import DataContract, TaskType
from mlpipe.tasks.data.split import SplitRefs, derived_seed, sample_rows
from mlpipe.tasks.datasets import DatasetRef
from mlpipe.tasks.metrics import compute_metrics
from mlpipe.tasks.model.families import ModelSpec, build_estimator
from mlpipe.tasks.model.preprocessing import build_preprocessor
from mlpipe.tasks.model.privacy import is_private
from mlpipe.tasks.model.pyfunc import output_frame
from mlpipe.tasks.model.train import encode_target
from mlpipe.tasks.sweep.study import PrunerSpec
from mlpipe.workspace import available_cores

TrialState = Literal["complete", "pruned", "failed"]
STAGES = 10
"""Forests and histogram boosting are grown in this many stages, reporting after each."""
RUN_STATUS = {"complete": RunStatus.FINISHED, "pruned": RunStatus.KILLED, "failed": RunStatus.FAILED}


class TrialTimeout(Exception):
    """The trial ran past its time limit."""


class TrialRequest(BaseModel):
    """Everything a worker needs to run one trial the flow asked the study for."""

    study: str
    storage: StudyStorage
    trial_id: int
    number: int
    spec: ModelSpec
    metric: str
    pruner: PrunerSpec
    cv: int | None = None
    report_every: int = 5
    timeout: float | None = None
    threads: int | None = None
    experiment_id: str
    parent_run_id: str


class TrialData(BaseModel):
    """The splits a trial trains and scores on; `combined` (train + validation) is folded with `cv`."""

    splits: SplitRefs
    combined: DatasetRef


class TrialOutcome(BaseModel):
    """How a trial ended, for the leaderboard and for checking the sweep's behaviour."""

    number: int
    family: str
    params: dict[str, Any]
    state: TrialState
    value: float | None
    metrics: dict[str, float]
    steps: int
    started: float
    finished: float
    worker: str
    mlflow_run_id: str
    error: str | None = None


class Reporter:
    """Reports intermediate scores to the trial and stops it when pruned or out of time."""

    def __init__(self, trial: optuna.Trial | None, deadline: float | None) -> None:
        self.trial = trial
        self.deadline = deadline
        self.history: list[tuple[int, float]] = []

    def tick(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TrialTimeout("the trial ran past its time limit")

    def report(self, step: int, value: float, *, last: bool = False) -> None:
        """Record `value` at `step`; the pruner may stop the trial here unless training is over (`last`).

        A trial that has finished training has paid for it: it completes with its value rather than
        being pruned after the fact. The value still reaches the study for the pruner's later judgements.
        """
        self.history.append((step, value))
        if self.trial is not None:
            self.trial.report(value, step)
            if not last and self.trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step}")
        self.tick()

    @property
    def steps(self) -> int:
        return self.history[-1][0] if self.history else 0


Scorer = Callable[[np.ndarray], float]
"""Raw estimator output on the validation rows → the sweep metric."""

XGB_METRICS = {"roc_auc": "auc", "log_loss": "logloss", "rmse": "rmse", "mae": "mae", "accuracy": "error"}
"""Sweep metrics xgboost computes itself each round (binary and regression problems)."""


class XGBoostReporter(TrainingCallback):
    """Reports the validation metric every `every` rounds from xgboost's own evaluation."""

    def __init__(
        self, reporter: Reporter, metric: str, every: int | None, scorer: Scorer, rows: Any, total: int
    ) -> None:
        super().__init__()
        self.reporter, self.metric, self.every, self.scorer, self.rows = reporter, metric, every, scorer, rows
        self.total = total

    def after_iteration(self, model: Any, epoch: int, evals_log: dict[str, Any]) -> bool:
        self.reporter.tick()
        rounds = epoch + 1
        if self.every is None or (rounds % self.every and rounds < self.total):
            return False
        native = XGB_METRICS.get(self.metric)
        history = evals_log.get("validation_0", {})
        if native in history:
            value = float(history[native][-1])
            value = 1.0 - value if native == "error" else value
        else:
            value = self.scorer(model.inplace_predict(self.rows, iteration_range=(0, rounds)))
        self.reporter.report(rounds, value, last=rounds >= self.total)
        return False


def fit_reporting(
    estimator: BaseEstimator,
    x_train: Any,
    y_train: np.ndarray,
    x_valid: Any,
    y_valid: np.ndarray,
    metric: str,
    scorer: Scorer,
    reporter: Reporter,
    every: int | None,
) -> None:
    """Fit `estimator`, reporting its validation score as it grows (`every=None`: only time checks)."""
    if isinstance(estimator, XGBModel):
        native = XGB_METRICS.get(metric)
        binary_or_regression = getattr(estimator, "n_classes_", 2) <= 2 and len(np.unique(y_train)) <= 2
        if native and (binary_or_regression or metric in ("rmse", "mae")):
            estimator.set_params(eval_metric=native)
        rounds = int(estimator.get_params()["n_estimators"] or 100)  # xgboost's own default when unset
        estimator.set_params(callbacks=[XGBoostReporter(reporter, metric, every, scorer, x_valid, rounds)])
        estimator.fit(x_train, y_train, eval_set=[(x_valid, y_valid)], verbose=False)
        return
    grown = {"n_estimators": "n_estimators", "max_iter": "max_iter"}
    size_param = next(
        (p for p in grown if p in estimator.get_params() and "warm_start" in estimator.get_params()), None
    )
    if size_param is None or every is None or is_private(estimator):
        # Linear models fit in one step; a differentially private one would spend its epsilon at every step.
        estimator.fit(x_train, y_train)
        if every is not None:
            reporter.report(1, scorer(_raw_output(estimator, x_valid)), last=True)
        return
    total = int(estimator.get_params()[size_param])
    estimator.set_params(warm_start=True)
    for size in sorted({max(1, round(total * k / STAGES)) for k in range(1, STAGES + 1)}):
        estimator.set_params(**{size_param: size})
        estimator.fit(x_train, y_train)
        reporter.report(size, scorer(_raw_output(estimator, x_valid)), last=size == total)
    estimator.set_params(warm_start=False)


def _raw_output(estimator: Any, rows: Any) -> np.ndarray:
    return estimator.predict_proba(rows) if hasattr(estimator, "predict_proba") else estimator.predict(rows)


TRIAL_ROWS = 1_000_000
"""A trial trains and scores on at most about this many rows of each split, sampled by row hash.

Trials of a sweep run side by side, a trial to a worker: a sample keeps each one a single-task fit
that any worker holds, where training every trial across the whole cluster would run them one at a
time. A sample of this size ranks candidates as the whole data would; the winner is then trained on
all of it (across the cluster when it is large)."""

_ROWS: dict[str, pd.DataFrame] = {}
_ROWS_LOCK = threading.Lock()


def _rows(ref: DatasetRef, store: Datastore) -> pd.DataFrame:
    """Snapshots are immutable, so a worker reads each one once for all the trials it runs (the last four)."""
    with _ROWS_LOCK:
        if ref.content_hash not in _ROWS:
            if len(_ROWS) >= 4:
                _ROWS.pop(next(iter(_ROWS)))
            _ROWS[ref.content_hash] = sample_rows(ref, store, TRIAL_ROWS, seed=0)
        return _ROWS[ref.content_hash]


def evaluate_candidate(
    spec: ModelSpec,
    contract: DataContract,
    train_rows: pd.DataFrame,
    valid_rows: pd.DataFrame,
    metric: str,
    reporter: Reporter,
    every: int | None,
    threads: int,
    source: str,
) -> dict[str, float]:
    """Fit `spec` on `train_rows` and return every metric on `valid_rows`."""
    task: TaskType = contract.task
    estimator = build_estimator(spec, task, n_jobs=threads, contract=contract)
    preprocessor = build_preprocessor(contract, spec.family)
    y_train, classes = encode_target(train_rows[contract.target], contract, source, every_class=True)
    y_valid, _ = encode_target(valid_rows[contract.target], contract, source)
    truth = valid_rows[contract.target]

    def scorer(raw: np.ndarray) -> float:
        return compute_metrics(task, truth, output_frame(raw, task, classes, truth.index), classes)[metric]

    with threadpool_limits(threads):
        x_train = preprocessor.fit_transform(train_rows)
        x_valid = preprocessor.transform(valid_rows)
        fit_reporting(estimator, x_train, y_train, x_valid, y_valid, metric, scorer, reporter, every)
        raw = _raw_output(estimator, x_valid)
    return compute_metrics(task, truth, output_frame(raw, task, classes, truth.index), classes)


def cross_validate(
    request: TrialRequest,
    contract: DataContract,
    rows: pd.DataFrame,
    reporter: Reporter,
    threads: int,
    source: str,
    fold_seed: int,
) -> dict[str, float]:
    """Mean (and spread) of every metric over K folds; the running mean is reported after each fold."""
    assert request.cv is not None
    if contract.task == "classification":
        folds = StratifiedKFold(request.cv, shuffle=True, random_state=fold_seed).split(rows, rows[contract.target])
    else:
        folds = KFold(request.cv, shuffle=True, random_state=fold_seed).split(rows)
    scores: list[dict[str, float]] = []
    quiet = Reporter(None, reporter.deadline)  # time checks inside a fold; pruning between folds
    for fold, (train_index, valid_index) in enumerate(folds, start=1):
        train_rows, valid_rows = rows.iloc[train_index], rows.iloc[valid_index]
        scores.append(
            evaluate_candidate(
                request.spec, contract, train_rows, valid_rows, request.metric, quiet, None, threads, source
            )
        )
        reporter.report(fold, float(np.mean([s[request.metric] for s in scores])), last=fold == request.cv)
    summary = {name: float(np.mean([s[name] for s in scores])) for name in scores[0]}
    summary.update({f"{name}_std": float(np.std([s[name] for s in scores])) for name in scores[0]})
    return summary


def run_trial(
    request: TrialRequest, data: TrialData, contract: DataContract, tracking: MlflowConnection, store: Datastore
) -> TrialOutcome:
    """Train and score one candidate; tell the study how it ended and log it as a nested MLflow run.

    A trial whose MLflow run cannot be started or completed (a tracking-server blip beyond the
    client's retries) is told to the study as failed, with the reason: it counts against
    `max_failed` like any failed trial, and the sweep goes on.
    """
    started = time.time()
    study = optuna.load_study(study_name=request.study, storage=request.storage.open(), pruner=request.pruner.build())
    trial = optuna.trial.Trial(study, request.trial_id)
    client = tracking.client()
    abandoned = trial.user_attrs.get("mlflow_run_id")  # set: a worker died running this trial, Dask ran it again
    try:
        run_id = _start_run(client, request)
    except Exception as failure:  # noqa: BLE001 - bookkeeping failed: the trial fails, the sweep goes on
        outcome = _outcome(request, started, "failed", {}, 0, "", f"MLflow: could not start the trial's run: {failure}")
        _tell(study, trial, outcome)
        return outcome
    trial.set_user_attr("mlflow_run_id", run_id)
    if abandoned:
        with suppress(Exception):  # best effort: the study already knows which run counts
            _close_abandoned(client, str(abandoned), run_id)
    threads = request.threads or max(1, available_cores())
    deadline = time.monotonic() + request.timeout if request.timeout else None
    # Each report is a durable write to the shared study (an fsync with the journal file), so
    # with no pruner the learning curve goes to MLflow only.
    reporter = Reporter(None if request.pruner.kind == "none" else trial, deadline)
    state: TrialState = "complete"
    metrics: dict[str, float] = {}
    error = None
    try:
        if request.cv:
            rows = _rows(data.combined, store)
            seed = derived_seed(request.spec.seed, data.combined.content_hash)
            metrics = cross_validate(request, contract, rows, reporter, threads, data.combined.source, seed)
        else:
            metrics = evaluate_candidate(
                request.spec,
                contract,
                _rows(data.splits.train, store),
                _rows(data.splits.validation, store),
                request.metric,
                reporter,
                request.report_every,
                threads,
                data.splits.train.source,
            )
    except optuna.TrialPruned:
        state = "pruned"
    except Exception as failure:  # noqa: BLE001 - a failed trial is recorded and the sweep goes on
        state, error = "failed", f"{type(failure).__name__}: {failure}"
    outcome = _outcome(request, started, state, metrics, reporter.steps, run_id, error)
    try:
        _log(client, outcome, request, reporter.history)
    except Exception as failure:  # noqa: BLE001 - bookkeeping failed: the trial fails, the sweep goes on
        outcome = outcome.model_copy(
            update={"state": "failed", "error": f"MLflow: could not record the trial: {failure}"}
        )
        _close_failed(client, outcome)
    _tell(study, trial, outcome)
    return outcome


def _start_run(client: Any, request: TrialRequest) -> str:
    run = client.create_run(
        request.experiment_id,
        run_name=f"trial-{request.number:03d}",
        tags={
            "mlflow.parentRunId": request.parent_run_id,
            "mlpipe.study": request.study,
            "mlpipe.trial_number": str(request.number),
            "mlpipe.family": request.spec.family,
            "mlpipe.worker": _worker_name(),  # where it runs, visible while it runs
        },
    )
    return str(run.info.run_id)


def _outcome(
    request: TrialRequest,
    started: float,
    state: TrialState,
    metrics: dict[str, float],
    steps: int,
    run_id: str,
    error: str | None,
) -> TrialOutcome:
    return TrialOutcome(
        number=request.number,
        family=request.spec.family,
        params=request.spec.params,
        state=state,
        value=metrics.get(request.metric),
        metrics=metrics,
        steps=steps,
        started=started,
        finished=time.time(),
        worker=_worker_name(),
        mlflow_run_id=run_id,
        error=error,
    )


def _close_abandoned(client: Any, abandoned: str, rerun: str) -> None:
    """Close the run of an attempt whose worker died as failed, naming the run that replaces it."""
    client.set_tag(abandoned, "mlpipe.trial_state", "failed")
    client.set_tag(abandoned, "mlpipe.error", f"the worker running this trial was lost; it ran again as run {rerun}")
    client.set_terminated(abandoned, RunStatus.to_string(RunStatus.FAILED))


def _close_failed(client: Any, outcome: TrialOutcome) -> None:
    """Mark the trial's run failed, with the reason, if the tracking server answers again (best effort)."""
    try:
        client.set_tag(outcome.mlflow_run_id, "mlpipe.trial_state", "failed")
        client.set_tag(outcome.mlflow_run_id, "mlpipe.error", (outcome.error or "")[:5000])
        client.set_terminated(outcome.mlflow_run_id, RunStatus.to_string(RunStatus.FAILED))
    except Exception:  # noqa: BLE001 - the study already has the reason; the run stays as the server left it
        pass


def _tell(study: optuna.Study, trial: optuna.Trial, outcome: TrialOutcome) -> None:
    for key, value in {
        "started": outcome.started,
        "finished": outcome.finished,
        "worker": outcome.worker,
        "steps": outcome.steps,
        "error": outcome.error,
    }.items():
        trial.set_user_attr(key, value)
    if outcome.state == "complete" and outcome.value is not None and not np.isnan(outcome.value):
        study.tell(trial, outcome.value)
    elif outcome.state == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
    else:
        study.tell(trial, state=optuna.trial.TrialState.FAIL)


def _log(client: Any, outcome: TrialOutcome, request: TrialRequest, history: list[tuple[int, float]]) -> None:
    """Parameters, the learning curve, final metrics and the trial's state, in two calls."""
    timestamp = int(outcome.finished * 1000)
    params = {"family": request.spec.family, **request.spec.params}
    metrics = [Metric(f"validation_{request.metric}", value, timestamp, step) for step, value in history]
    metrics += [Metric(f"final_{name}", value, timestamp, 0) for name, value in outcome.metrics.items()]
    metrics += [
        Metric("steps", float(outcome.steps), timestamp, 0),
        Metric("seconds", outcome.finished - outcome.started, timestamp, 0),
    ]
    tags = [RunTag("mlpipe.trial_state", outcome.state), RunTag("mlpipe.worker", outcome.worker)]
    if outcome.error:
        tags.append(RunTag("mlpipe.error", outcome.error[:5000]))
    client.log_batch(
        outcome.mlflow_run_id,
        metrics=metrics,
        params=[Param(k, str(v)) for k, v in params.items()],
        tags=tags,
    )
    client.set_terminated(outcome.mlflow_run_id, RunStatus.to_string(RUN_STATUS[outcome.state]))


def _worker_name() -> str:
    from distributed import get_worker

    try:
        return str(get_worker().address)
    except ValueError:
        return "local"


trial_task = pipeline_task(run_trial, cache_policy=NO_CACHE).with_options(retries=0)
"""No retries: a trial records its own failures, and running one again would start a second MLflow run
for it; a trial whose task breaks all the same is failed by the sweep (`fail_broken`)."""
