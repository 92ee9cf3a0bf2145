"""A sweep's bookkeeping: its parent MLflow run, its leaderboard, its plots and its winner."""

import math
from typing import TYPE_CHECKING, Any

import optuna
from mlflow.entities import Metric, Param, RunStatus, RunTag
from optuna.trial import FrozenTrial, TrialState
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.blocks.study import StudyStorage
from mlpipe.errors import MlpipeError
from mlpipe.lineage import lineage_tags
from mlpipe.tasks import artifacts
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.links import artifact_key, mlflow_links
from mlpipe.tasks.model.families import ModelSpec
from mlpipe.tasks.sweep.space import SearchSpace
from mlpipe.tasks.sweep.study import Goal, StudySpec, best_trial, counted, open_study, requeue_interrupted

if TYPE_CHECKING:  # matplotlib loads when the plots are drawn
    from matplotlib.figure import Figure

SWEEP_TAG = "mlpipe.sweep_study"
"""Tag of a sweep's parent run: the study name, so a resumed sweep finds its run again."""


class SweepRun(BaseModel):
    """Where a sweep records itself: the study and its parent MLflow run."""

    study: str
    experiment_id: str
    parent_run_id: str
    requeued: list[int]


class LeaderboardRow(BaseModel):
    rank: int | None
    trial: int
    family: str
    state: str
    value: float | None
    steps: int
    seconds: float | None
    params: dict[str, Any]
    mlflow_run_id: str | None

    def shown_params(self) -> str:
        """The trial's parameters as `name=value` under the family's own names, for people to read.

        In a space of several families optuna's names are `family` and `xgboost.max_depth`; the
        family has a column of its own wherever a row is shown.
        """
        own = {name.removeprefix(f"{self.family}."): value for name, value in self.params.items() if name != "family"}
        return ", ".join(
            f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}" for name, value in own.items()
        )


class SweepTiming(BaseModel):
    """How long this run's trials took: wall time and the sum of the trials' own times."""

    wall_seconds: float
    trial_seconds: float

    @property
    def parallelism(self) -> float:
        """Trials running at once, on average (trial time / wall time)."""
        return self.trial_seconds / self.wall_seconds if self.wall_seconds > 0 else 0.0


class SweepResult(BaseModel):
    """The winner and every trial, best first."""

    study: str
    metric: str
    goal: Goal
    best_trial: int
    best_value: float
    best_spec: ModelSpec
    leaderboard: list[LeaderboardRow]
    total_steps: int
    timing: SweepTiming


def start_sweep(
    study_name: str,
    model_name: str,
    spec: StudySpec,
    space: SearchSpace,
    fingerprint: str,
    storage: StudyStorage,
    tracking: MlflowConnection,
) -> SweepRun:
    """Create or resume the study and its parent MLflow run (one per study, reopened on resume)."""
    study = open_study(study_name, storage, spec, fingerprint)
    client = tracking.client()
    experiment_id = tracking.experiment_id(model_name)
    found = client.search_runs([experiment_id], filter_string=f"tags.`{SWEEP_TAG}` = '{study_name}'", max_results=1)
    if found:
        parent_run_id = found[0].info.run_id
        client.update_run(parent_run_id, status="RUNNING")
    else:
        run = client.create_run(
            experiment_id,
            run_name=f"sweep-{study_name}",
            tags={SWEEP_TAG: study_name, "mlpipe.model_name": model_name, **lineage_tags()},
        )
        parent_run_id = run.info.run_id
        settings = {
            "sampler": spec.sampler,
            "pruner": spec.pruner.kind,
            "metric": spec.metric,
            "goal": spec.goal,
            "cv": spec.cv,
            "seed": spec.seed,
            "families": ",".join(space.families),
        }
        client.log_batch(parent_run_id, params=[Param(k, str(v)) for k, v in settings.items()])
        client.log_dict(parent_run_id, space.model_dump(mode="json"), "sweep/space.json")
    interrupted = requeue_interrupted(study)
    for trial in interrupted:  # their MLflow runs were left running too
        run_id = trial.user_attrs.get("mlflow_run_id")
        if run_id:
            client.set_tag(run_id, "mlpipe.trial_state", "interrupted")
            client.set_terminated(run_id, "FAILED")
    requeued = [trial.number for trial in interrupted]
    return SweepRun(study=study_name, experiment_id=experiment_id, parent_run_id=parent_run_id, requeued=requeued)


def leaderboard(trials: list[FrozenTrial], space: SearchSpace, goal: Goal, seed: int) -> list[LeaderboardRow]:
    """Every counted trial: completed ones ranked best first, then pruned, then failed."""
    best_first = sorted(
        counted(trials),
        key=lambda t: (
            {TrialState.COMPLETE: 0, TrialState.PRUNED: 1}.get(t.state, 2),
            (-1 if goal == "maximize" else 1) * (t.value if t.value is not None else 0.0),
            t.number,
        ),
    )
    rows = []
    for rank, trial in enumerate(best_first, start=1):
        started, finished = trial.user_attrs.get("started"), trial.user_attrs.get("finished")
        rows.append(
            LeaderboardRow(
                rank=rank if trial.state == TrialState.COMPLETE else None,
                trial=trial.number,
                family=space.spec_from_params(trial.params, seed).family,
                state={TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(trial.state, "failed"),
                value=trial.value if trial.state == TrialState.COMPLETE else _last_report(trial),
                steps=int(trial.user_attrs.get("steps", 0)),
                seconds=finished - started if started and finished else None,
                params=trial.params,
                mlflow_run_id=trial.user_attrs.get("mlflow_run_id"),
            )
        )
    return rows


def finish_sweep(
    sweep: SweepRun,
    spec: StudySpec,
    space: SearchSpace,
    timing: SweepTiming,
    storage: StudyStorage,
    tracking: MlflowConnection,
) -> SweepResult:
    """Pick the winner, publish the leaderboard and plots, and close the parent run.

    Raises:
        MlpipeError: no trial completed, so there is nothing to register.
    """
    assert spec.goal is not None and spec.metric is not None
    study = optuna.load_study(study_name=sweep.study, storage=storage.open())
    trials = study.get_trials(deepcopy=False)
    client = tracking.client()
    best = best_trial(trials, spec.goal)
    if best is None or best.value is None:
        client.set_terminated(sweep.parent_run_id, "FAILED")
        raise MlpipeError(f"sweep '{sweep.study}': no trial completed ({len(counted(trials))} pruned or failed)")
    rows = leaderboard(trials, space, spec.goal, spec.seed)
    total_steps = sum(row.steps for row in rows)
    states = {state: sum(row.state == state for row in rows) for state in ("complete", "pruned", "failed")}
    client.log_batch(
        sweep.parent_run_id,
        metrics=[
            Metric(f"best_{spec.metric}", best.value, 0, 0),
            Metric("total_steps", float(total_steps), 0, 0),
            Metric("trials_wall_seconds", timing.wall_seconds, 0, 0),
            Metric("trials_parallelism", timing.parallelism, 0, 0),
            *[Metric(f"trials_{state}", float(count), 0, 0) for state, count in states.items()],
        ],
        tags=[RunTag("mlpipe.best_trial", str(best.number))],
    )
    for name, figure in sweep_plots(study, trials, spec).items():
        client.log_figure(sweep.parent_run_id, figure, f"sweep/{name}.png")
    client.set_terminated(sweep.parent_run_id, RunStatus.to_string(RunStatus.FINISHED))
    _publish(sweep, spec, rows, tracking)
    return SweepResult(
        study=sweep.study,
        metric=spec.metric,
        goal=spec.goal,
        best_trial=best.number,
        best_value=best.value,
        best_spec=space.spec_from_params(best.params, spec.seed),
        leaderboard=rows,
        total_steps=total_steps,
        timing=timing,
    )


def sweep_plots(study: optuna.Study, trials: list[FrozenTrial], spec: StudySpec) -> dict[str, "Figure"]:
    """Optimisation history (each trial and the best so far) and, with enough trials, parameter importance."""
    from matplotlib.figure import Figure

    complete = [t for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
    figure = Figure(figsize=(7, 4))
    axis = figure.subplots()
    axis.scatter([t.number for t in complete], [float(t.value or 0.0) for t in complete], s=12, label="trial")
    best_so_far, best = [], None
    for trial in sorted(complete, key=lambda t: t.number):
        value = float(trial.value)  # type: ignore[arg-type]
        if best is None or (value > best if spec.goal == "maximize" else value < best):
            best = value
        best_so_far.append(best)
    axis.step([t.number for t in sorted(complete, key=lambda t: t.number)], best_so_far, where="post", label="best")
    axis.set(xlabel="trial", ylabel=f"validation {spec.metric}", title="Optimisation history")
    axis.legend()
    figures = {"optimization_history": figure}
    varied = {name for t in complete for name in t.params}
    if len(complete) >= 3 and varied and len({t.value for t in complete}) > 1:
        # fANOVA explains the spread of the scores; with every trial scoring the same there is none to explain.
        importances = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=spec.seed)
        )
        figure = Figure(figsize=(7, 1.5 + 0.35 * len(importances)))
        axis = figure.subplots()
        names = list(importances)[::-1]
        axis.barh(names, [importances[name] for name in names])
        axis.set(xlabel="importance (fANOVA)", title="Hyperparameter importance")
        figure.tight_layout()
        figures["param_importances"] = figure
    return figures


def _publish(sweep: SweepRun, spec: StudySpec, rows: list[LeaderboardRow], tracking: MlflowConnection) -> None:
    """Leaderboard, and the best trial of each family when the sweep searched several."""
    study = sweep.study
    links = mlflow_links(
        tracking, run_id=sweep.parent_run_id, experiment_id=sweep.experiment_id, run_label="MLflow parent run"
    )
    artifacts.table(
        f"{artifact_key(study)}-leaderboard",
        [
            {
                "rank": r.rank or "",
                "trial": r.trial,
                "family": r.family,
                "state": r.state,
                spec.metric or "value": _rounded(r.value),
                "steps": r.steps,
                "seconds": _rounded(r.seconds),
                "params": r.shown_params(),
            }
            for r in rows
        ],
        f"sweep {study}: trials, best first ({spec.metric}, {spec.goal})",
        links=links,
    )
    by_family: dict[str, LeaderboardRow] = {}
    for row in rows:
        if row.state == "complete" and row.family not in by_family:
            by_family[row.family] = row
    if len({r.family for r in rows}) > 1:
        artifacts.table(
            f"{artifact_key(study)}-families",
            [
                {"family": f, "best trial": r.trial, spec.metric or "value": _rounded(r.value)}
                for f, r in by_family.items()
            ],
            f"sweep {study}: best trial of each model family",
            links=links,
        )


def _last_report(trial: FrozenTrial) -> float | None:
    return trial.intermediate_values[max(trial.intermediate_values)] if trial.intermediate_values else None


def _rounded(value: Any) -> Any:
    if isinstance(value, float) and math.isfinite(value):
        return round(value, 6)
    return value


start_sweep_task = pipeline_task(start_sweep, cache_policy=NO_CACHE)
finish_sweep_task = pipeline_task(finish_sweep, cache_policy=NO_CACHE)
