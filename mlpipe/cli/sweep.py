"""`mlpipe sweep` and `mlpipe automl`: hyperparameter search on Dask, the best configuration through the gate."""

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import out, print_training, run
from mlpipe.cli.startup import preparing_flow

if TYPE_CHECKING:
    from mlpipe.flows.sweep import SweepSummary

SWEEP_SECTIONS = "mlflow/datastore/cluster/gate/studies/sweep"


def sweep(
    data: opt.Data,
    target: opt.Target,
    name: opt.ModelName,
    space: Annotated[str, typer.Option(help="search space YAML/JSON file, or 'auto' for AutoML")],
    sampler: Annotated[str | None, typer.Option(help=opt.SAMPLERS + " (default tpe)")] = None,
    pruner: Annotated[str | None, typer.Option(help=opt.PRUNERS + " (default median)")] = None,
    metric: opt.Metric = None,
    goal: Annotated[str | None, typer.Option(help="maximize | minimize (default: from the metric)")] = None,
    max_trials: Annotated[int | None, typer.Option(help="trials in the study (default 20)")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="trials at once (default: worker threads)")] = None,
    max_failed: Annotated[int | None, typer.Option(help="failed trials that stop the sweep (default 5)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds after which no trial starts")] = None,
    trial_timeout: Annotated[float | None, typer.Option(help="seconds a trial may run")] = None,
    cv: Annotated[int | None, typer.Option(help="score trials by K-fold cross-validation")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="steps before a trial can be pruned")] = None,
    startup_trials: Annotated[int | None, typer.Option(help="trials that finish before pruning starts")] = None,
    exit_score: opt.ExitScore = None,
    study: Annotated[str | None, typer.Option(help="study name (default: derived from the inputs)")] = None,
    device: opt.Device = None,
    gpu: Annotated[bool, typer.Option(help="the same as --device cuda")] = False,
    wait_for_study: Annotated[
        float | None, typer.Option(help="seconds to wait while another sweep holds the study (default: fail at once)")
    ] = None,
    config: Annotated[opt.ConfigFile, opt.config_option(SWEEP_SECTIONS)] = None,
    task: opt.Task = None,
    time_column: opt.TimeColumn = None,
    time_split: opt.TimeSplit = False,
    exclude: opt.Exclude = None,
    sensitive: opt.Sensitive = None,
    contract: opt.Contract = None,
    seed: opt.Seed = None,
) -> None:
    """Search hyperparameters in parallel on Dask; register the best through the gate."""
    if gpu and device not in (None, "cuda"):
        raise typer.BadParameter(f"--gpu means --device cuda, not --device {device}", param_hint="--gpu")
    options = {
        **opt.data_options(data, target, name, task, time_column, exclude, contract, sensitive),
        "study_name": study,
        "max_trials": max_trials,
        "max_concurrent": max_concurrent,
        "max_failed": max_failed,
        "timeout": timeout,
        "trial_timeout": trial_timeout,
        "exit_score": exit_score,
        "device": "cuda" if gpu else device,
        "wait_for_study": wait_for_study,
    }
    study_options = {
        "sampler": sampler,
        "metric": metric,
        "goal": goal,
        "cv": cv,
        "seed": seed,
        "pruner": {"kind": pruner, "warmup_steps": warmup_steps, "startup_trials": startup_trials},
    }
    split_options = {"seed": seed, "time_ordered": time_split or None}
    run(lambda: run_sweep(config, space, options, study_options, split_options))


def automl(
    data: opt.Data,
    target: opt.Target,
    name: opt.ModelName,
    timeout: Annotated[float, typer.Option(help="time budget in seconds: no trial starts after it")] = 600.0,
    max_trials: Annotated[int, typer.Option(help="most trials")] = 100,
    exit_score: opt.ExitScore = None,
    metric: opt.Metric = None,
    exclude: opt.Exclude = None,
    sensitive: opt.Sensitive = None,
    time_column: Annotated[str | None, typer.Option(help="timestamp column (not a feature)")] = None,
    config: Annotated[opt.ConfigFile, opt.config_option(SWEEP_SECTIONS)] = None,
    seed: opt.Seed = None,
) -> None:
    """AutoML: search xgboost, forests, histogram boosting and linear models within a time budget."""
    options = {
        **opt.data_options(data, target, name, time_column=time_column, exclude=exclude, sensitive=sensitive),
        "timeout": timeout,
        "max_trials": max_trials,
        "exit_score": exit_score,
    }
    run(lambda: run_sweep(config, "auto", options, {"metric": metric, "seed": seed}, {"seed": seed}))


def run_sweep(
    config: Path | None,
    space: str,
    options: dict[str, Any],
    study_options: dict[str, Any],
    split_options: dict[str, Any],
) -> None:
    """Run the sweep flow on the config file's `sweep` section with the options over it; print the leaderboard."""
    with preparing_flow():
        from mlpipe.blocks.config import run_config
        from mlpipe.errors import validated
        from mlpipe.flows.sweep import SweepParams
        from mlpipe.flows.sweep import sweep as sweep_flow
        from mlpipe.tasks.sweep.space import load_space

        settings = run_config(config, "sweep", options, {"study": study_options, "split": split_options})
        params = validated(
            SweepParams, {**settings.params, "space": space if space == "auto" else load_space(space)}, settings.source
        )
    summary = sweep_flow(params, settings.workspace)
    _print_leaderboard(summary)
    print_training(summary.training)


def _print_leaderboard(summary: "SweepSummary") -> None:
    from rich.table import Table

    result = summary.sweep
    table = Table(title=f"sweep {result.study}: best first ({result.metric}, {result.goal})")
    for column in ("rank", "trial", "family", "state", result.metric, "steps", "params"):
        table.add_column(column)
    for row in result.leaderboard[:10]:
        value = "" if row.value is None else f"{row.value:.4f}"
        shown = (str(row.rank or ""), str(row.trial), row.family, row.state, value, str(row.steps), row.shown_params())
        table.add_row(*shown)
    out.print(table)
    counts = {state: sum(r.state == state for r in result.leaderboard) for state in ("complete", "pruned", "failed")}
    out.print(
        f"Trials: {counts['complete']} complete, {counts['pruned']} pruned, {counts['failed']} failed"
        + (f"; resumed {summary.resumed_trials}" if summary.resumed_trials else "")
        + f". Best: trial {result.best_trial} ({result.best_spec.family}), {result.metric} {result.best_value:.4f}",
        soft_wrap=True,
    )
    timing = result.timing
    out.print(
        f"This run's trials: {timing.wall_seconds:.1f} s wall, {timing.trial_seconds:.1f} s of trial time "
        f"({timing.parallelism:.2f} running at once on average)"
    )
