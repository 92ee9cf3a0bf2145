"""The `mlpipe` command line: train, sweep, automl, score, demo and generate."""

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from mlpipe.errors import ConfigError, MlpipeError, validated
from mlpipe.runtime import configure_process

if TYPE_CHECKING:
    from flows.training import TrainingSummary

app = typer.Typer(help="Open, self-hosted ML pipelines on Prefect, Dask and MLflow.", no_args_is_help=True)
out = Console()
err = Console(stderr=True)

DEMO_ROWS = 100_000


@app.callback()
def _main() -> None:
    configure_process()


@app.command()
def train(
    data: Annotated[str, typer.Option(help="CSV or Parquet file: local path or any fsspec URL")],
    target: Annotated[str, typer.Option(help="column to predict")],
    name: Annotated[str, typer.Option(help="registered model name")],
    task: Annotated[str | None, typer.Option(help="classification | regression (default: inferred)")] = None,
    model: Annotated[
        str | None, typer.Option(help="xgboost | random_forest | extra_trees | hist_gradient_boosting | linear")
    ] = None,
    param: Annotated[list[str] | None, typer.Option(help="hyperparameter KEY=VALUE (repeatable)")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with mlflow/datastore/cluster/gate/training")] = None,
    time_column: Annotated[str | None, typer.Option(help="timestamp column; with --time-split, split by it")] = None,
    time_split: Annotated[bool, typer.Option(help="newest rows become the test set")] = False,
    exclude: Annotated[list[str] | None, typer.Option(help="column that is not a feature (repeatable)")] = None,
    contract: Annotated[str | None, typer.Option(help="data contract file to enforce")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for the split and the model")] = None,
) -> None:
    """Train, evaluate, gate and register a model."""
    overrides: dict[str, Any] = {
        "data": data,
        "target": target,
        "name": name,
        "task": task,
        "time_column": time_column,
        "exclude": exclude,
        "contract_file": contract,
    }
    split_overrides: dict[str, Any] = {"seed": seed, "time_ordered": time_split or None}
    _run(
        lambda: _train(
            config, overrides, {"family": model, "params": parse_params(param or []), "seed": seed}, split_overrides
        )
    )


@app.command()
def demo(
    rows: Annotated[int, typer.Option(help="rows of demo data")] = DEMO_ROWS,
    drift: Annotated[float, typer.Option(help="0..1: how far the demo data drifts")] = 0.0,
) -> None:
    """Generate demo credit-default data and run the training pipeline on it."""
    _run(lambda: _demo(rows, drift))


@app.command()
def generate(
    output: Annotated[Path, typer.Argument(help="file to write (.parquet or .csv)")],
    rows: Annotated[int, typer.Option(help="number of rows")] = DEMO_ROWS,
    drift: Annotated[float, typer.Option(help="0..1: shifted distributions and relationships")] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    columns: Annotated[int, typer.Option(help="total columns (≥ 18; extra ones are numeric signals)")] = 18,
) -> None:
    """Write a demo credit-default dataset."""
    _run(lambda: _generate(output, rows, drift, seed, columns))


FLOW_SECTIONS = {"training", "sweep", "scoring", "monitoring"}
"""Config file sections that hold a flow's parameters rather than workspace settings."""
SAMPLERS = "grid | random | tpe"
PRUNERS = "none | median | halving | hyperband | percentile"


@app.command()
def sweep(
    data: Annotated[str, typer.Option(help="CSV or Parquet file: local path or any fsspec URL")],
    target: Annotated[str, typer.Option(help="column to predict")],
    name: Annotated[str, typer.Option(help="registered model name")],
    space: Annotated[str, typer.Option(help="search space YAML/JSON file, or 'auto' for AutoML")],
    sampler: Annotated[str | None, typer.Option(help=SAMPLERS + " (default tpe)")] = None,
    pruner: Annotated[str | None, typer.Option(help=PRUNERS + " (default median)")] = None,
    metric: Annotated[str | None, typer.Option(help="validation metric (default roc_auc / rmse)")] = None,
    goal: Annotated[str | None, typer.Option(help="maximize | minimize (default: from the metric)")] = None,
    max_trials: Annotated[int | None, typer.Option(help="trials in the study (default 20)")] = None,
    max_concurrent: Annotated[int | None, typer.Option(help="trials at once (default: worker threads)")] = None,
    max_failed: Annotated[int | None, typer.Option(help="failed trials that stop the sweep (default 5)")] = None,
    timeout: Annotated[float | None, typer.Option(help="seconds after which no trial starts")] = None,
    trial_timeout: Annotated[float | None, typer.Option(help="seconds a trial may run")] = None,
    cv: Annotated[int | None, typer.Option(help="score trials by K-fold cross-validation")] = None,
    warmup_steps: Annotated[int | None, typer.Option(help="steps before a trial can be pruned")] = None,
    startup_trials: Annotated[int | None, typer.Option(help="trials that finish before pruning starts")] = None,
    exit_score: Annotated[float | None, typer.Option(help="stop once the best trial reaches this score")] = None,
    study: Annotated[str | None, typer.Option(help="study name (default: derived from the inputs)")] = None,
    gpu: Annotated[bool, typer.Option(help="run trials on workers with the GPU resource")] = False,
    config: Annotated[Path | None, typer.Option(help="YAML with mlflow/datastore/cluster/gate/studies/sweep")] = None,
    task: Annotated[str | None, typer.Option(help="classification | regression (default: inferred)")] = None,
    time_column: Annotated[str | None, typer.Option(help="timestamp column; with --time-split, split by it")] = None,
    time_split: Annotated[bool, typer.Option(help="newest rows become the test set")] = False,
    exclude: Annotated[list[str] | None, typer.Option(help="column that is not a feature (repeatable)")] = None,
    contract: Annotated[str | None, typer.Option(help="data contract file to enforce")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for the sampler, the split and the models")] = None,
) -> None:
    """Search hyperparameters in parallel on Dask; register the best through the gate."""
    overrides: dict[str, Any] = {
        "data": data,
        "target": target,
        "name": name,
        "task": task,
        "time_column": time_column,
        "exclude": exclude,
        "contract_file": contract,
        "study_name": study,
        "max_trials": max_trials,
        "max_concurrent": max_concurrent,
        "max_failed": max_failed,
        "timeout": timeout,
        "trial_timeout": trial_timeout,
        "exit_score": exit_score,
        "gpu": gpu or None,
    }
    study_overrides = {
        "sampler": sampler,
        "metric": metric,
        "goal": goal,
        "cv": cv,
        "seed": seed,
        "pruner": {"kind": pruner, "warmup_steps": warmup_steps, "startup_trials": startup_trials},
    }
    split_overrides = {"seed": seed, "time_ordered": time_split or None}
    _run(lambda: _sweep(config, space, overrides, study_overrides, split_overrides))


@app.command()
def automl(
    data: Annotated[str, typer.Option(help="CSV or Parquet file: local path or any fsspec URL")],
    target: Annotated[str, typer.Option(help="column to predict")],
    name: Annotated[str, typer.Option(help="registered model name")],
    timeout: Annotated[float, typer.Option(help="time budget in seconds: no trial starts after it")] = 600.0,
    max_trials: Annotated[int, typer.Option(help="most trials")] = 100,
    exit_score: Annotated[float | None, typer.Option(help="stop once the best trial reaches this score")] = None,
    metric: Annotated[str | None, typer.Option(help="validation metric (default roc_auc / rmse)")] = None,
    exclude: Annotated[list[str] | None, typer.Option(help="column that is not a feature (repeatable)")] = None,
    time_column: Annotated[str | None, typer.Option(help="timestamp column (not a feature)")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with mlflow/datastore/cluster/gate/studies/sweep")] = None,
    seed: Annotated[int | None, typer.Option(help="seed for the sampler, the split and the models")] = None,
) -> None:
    """AutoML: search xgboost, forests, histogram boosting and linear models within a time budget."""
    overrides: dict[str, Any] = {
        "data": data,
        "target": target,
        "name": name,
        "time_column": time_column,
        "exclude": exclude,
        "timeout": timeout,
        "max_trials": max_trials,
        "exit_score": exit_score,
    }
    _run(lambda: _sweep(config, "auto", overrides, {"metric": metric, "seed": seed}, {"seed": seed}))


@app.command()
def score(
    model: Annotated[str, typer.Option(help="NAME@ALIAS, NAME/VERSION or an MLflow model URI")],
    input: Annotated[str, typer.Option(help="Parquet/CSV file, directory or glob; local or any fsspec URL")],
    output: Annotated[str, typer.Option(help="output folder (partitioned Parquet); local or any fsspec URL")],
    mini_batch_size: Annotated[int | None, typer.Option(help="rows per batch (default 1,000,000)")] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="batches in flight (default: worker threads)")] = None,
    error_threshold: Annotated[
        int | None, typer.Option(help="errored rows + unreadable files allowed (default 0; -1: any)")
    ] = None,
    mode: Annotated[str | None, typer.Option(help="append | overwrite (default append)")] = None,
    passthrough: Annotated[str | None, typer.Option(help="input columns to copy to the output: COL,COL…")] = None,
    partition: Annotated[str | None, typer.Option(help="output partition value (default: the run key)")] = None,
    config: Annotated[Path | None, typer.Option(help="YAML with mlflow/datastore/cluster/scoring")] = None,
) -> None:
    """Score Parquet or CSV files with a registered model on Dask, into a partitioned Parquet dataset."""
    overrides: dict[str, Any] = {
        "model": model,
        "input": input,
        "output": output,
        "mini_batch_size": mini_batch_size,
        "max_concurrency": max_concurrency,
        "error_threshold": error_threshold,
        "mode": mode,
        "passthrough": _columns(passthrough),
        "partition": partition,
    }
    _run(lambda: _score(config, overrides))


@app.command()
def drift(
    model: Annotated[str, typer.Option(help="registered model name (its champion is checked)")],
    current: Annotated[str, typer.Option(help="new data: Parquet/CSV file, directory or glob; local or fsspec URL")],
    reference: Annotated[str | None, typer.Option(help="default: the champion's training data")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole result as JSON")] = False,
    config: Annotated[Path | None, typer.Option(help="YAML with mlflow/cluster/drift")] = None,
) -> None:
    """Check new data for drift against the champion's training data; emits Prefect events."""

    def check() -> None:
        from blocks.workspace import WorkspaceConfig, load_config_file
        from flows.drift import DriftParams, drift_check
        from tasks.monitor import feature_table

        sections = load_config_file(config) if config else {}
        source = str(config) if config else "command line"
        params = validated(DriftParams, {"model": model, "current": current, "reference": reference}, source)
        summary = drift_check(params, WorkspaceConfig.from_mapping(sections, source))
        if as_json:
            out.print_json(summary.model_dump_json())
            return
        table = Table(title=f"drift: {summary.model.name} v{summary.model.version}")
        for column in ("feature", "test", "statistic", "threshold", "drifted"):
            table.add_column(column)
        for row in feature_table(summary):
            table.add_row(*(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.values()))
        out.print(table)
        for signal in summary.quality:
            out.print(f"quality: {signal.feature}: {signal.signal}: {signal.detail}", soft_wrap=True)
        verdict = "[red]drift detected[/]" if summary.drifted else "[green]no dataset drift[/]"
        out.print(f"{verdict}: {summary.data.drift_share:.0%} of features drifted; MLflow run {summary.mlflow_run_id}")

    _run(check)


@app.command()
def rollback(
    name: Annotated[str, typer.Argument(help="registered model name")],
    to: Annotated[str | None, typer.Option(help="version to make champion (default: the one it replaced)")] = None,
    reason: Annotated[str, typer.Option(help="why, for the alias history")] = "manual rollback",
    config: Annotated[Path | None, typer.Option(help="YAML with an mlflow section")] = None,
) -> None:
    """Move `champion` back to an earlier version, recording who, why and when."""

    def move() -> None:
        from blocks.workspace import WorkspaceConfig, load_config_file
        from tasks.aliases import alias_history
        from tasks.aliases import rollback as roll_back

        source = str(config) if config else "command line"
        tracking = WorkspaceConfig.from_mapping(load_config_file(config) if config else {}, source).resolve().mlflow
        change = roll_back(name, tracking, to, reason)
        out.print(f"{name}: champion is now version {change.version} (was {change.previous}).")
        for entry in alias_history(name, tracking)[-5:]:
            out.print(f"  {entry.at}  v{entry.previous or '-'} → v{entry.version}  by {entry.by}: {entry.reason}")

    _run(move)


deploy_app = typer.Typer(help="Register unattended runs (schedules, triggers) on a Prefect server.")
app.add_typer(deploy_app, name="deploy")


@deploy_app.callback(invoke_without_command=True)
def deploy(
    context: typer.Context,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML with training / scoring / monitoring sections (and mlflow, cluster, …)"),
    ] = None,
) -> None:
    """Register everything the config file describes: training on demand, scoring on cron, the closed loop."""
    if context.invoked_subcommand is not None:
        return
    if config is None:
        out.print(context.get_help())
        raise typer.Exit(2)

    def register() -> None:
        from blocks.workspace import load_config_file
        from deployments.project import deploy_project

        for name, deployment_id in deploy_project(load_config_file(config), str(config)).items():
            out.print(f"{name}: {deployment_id}")
        out.print("Serve them with: mlpipe worker")

    _run(register)


@deploy_app.command("scoring")
def deploy_scoring(
    model: Annotated[str, typer.Option(help="model reference; NAME@champion follows the champion")],
    input: Annotated[str, typer.Option(help="input location; {window_start:%Y-%m-%d} is the night's date")],
    output: Annotated[str, typer.Option(help="output folder; each night becomes partition run=<window date>")],
    cron: Annotated[str, typer.Option(help="schedule")] = "0 2 * * *",
    timezone: Annotated[str, typer.Option(help="time zone of the schedule")] = "UTC",
    name: Annotated[str, typer.Option(help="deployment name")] = "nightly-scoring",
    pool: Annotated[str, typer.Option(help="process work pool (created if missing)")] = "mlpipe",
    error_threshold: Annotated[int | None, typer.Option(help="errored rows allowed (-1: any)")] = None,
    passthrough: Annotated[str | None, typer.Option(help="input columns to copy to the output: COL,COL…")] = None,
) -> None:
    """Schedule batch scoring (nightly by default) on the Prefect server in PREFECT_API_URL."""

    def register() -> None:
        from deployments.scoring import deploy_nightly_scoring

        settings: dict[str, Any] = {"error_threshold": error_threshold, "passthrough": _columns(passthrough)}
        deployment_id = deploy_nightly_scoring(
            model, input, output, cron, timezone, name, pool, **{k: v for k, v in settings.items() if v is not None}
        )
        out.print(f"Deployment batch-scoring/{name} ({deployment_id}): {cron} ({timezone}) on work pool '{pool}'.")
        out.print(f"Run its flows with: mlpipe worker --pool {pool}", soft_wrap=True)

    _run(register)


@app.command()
def worker(
    pool: Annotated[str, typer.Option(help="process work pool to serve (created if missing)")] = "mlpipe",
    limit: Annotated[int | None, typer.Option(help="flow runs at once (default: no limit)")] = None,
) -> None:
    """Run the deployments: a Prefect process worker on the pool, for the server in PREFECT_API_URL."""

    def serve() -> None:
        from deployments.register import ensure_work_pool

        ensure_work_pool(pool)
        command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
        os.execv(sys.executable, command + (["--limit", str(limit)] if limit else []))

    _run(serve)


def _columns(listed: str | None) -> list[str] | None:
    return [c.strip() for c in listed.split(",") if c.strip()] if listed else None


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs with YAML-typed values (`0.1` is a float, `true` a bool, `none` null)."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"--param '{pair}': expected KEY=VALUE")
        try:
            parsed = yaml.safe_load(value) if value else None
        except yaml.YAMLError:
            raise ConfigError(f"--param '{pair}': the value is not a number, boolean or string") from None
        if isinstance(parsed, dict | list):
            raise ConfigError(f"--param '{pair}': expected a single value")
        params[key.strip()] = parsed
    return params


def _train(
    config: Path | None, overrides: dict[str, Any], model_overrides: dict[str, Any], split_overrides: dict[str, Any]
) -> None:
    from blocks.workspace import WorkspaceConfig
    from flows.training import TrainingParams, training

    settings, sections, source = _settings(
        config, "training", overrides, {"model": model_overrides, "split": split_overrides}
    )
    params = validated(TrainingParams, settings, source)
    summary = training(params, WorkspaceConfig.from_mapping(sections, source))
    _print_summary(summary)


def _settings(
    config: Path | None, section: str, overrides: dict[str, Any], nested: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, Any], str]:
    """A flow's parameters: the config file's `section`, overridden by the options that were given.

    Returns the parameters, the remaining (workspace) sections and the name of their source.
    """
    from blocks.workspace import load_config_file

    sections = load_config_file(config) if config else {}
    settings = dict(sections.pop(section, None) or {})
    for other in FLOW_SECTIONS - {section}:
        sections.pop(other, None)
    settings.update({k: v for k, v in overrides.items() if v is not None})
    for name, values in nested.items():
        settings[name] = _merged(dict(settings.get(name) or {}), values)
    return settings, sections, str(config) if config else "command line"


def _merged(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`values` over `base`, one level down for mappings (`params`, `pruner`); None leaves a key alone."""
    for key, value in values.items():
        if isinstance(value, dict):
            base[key] = _merged(dict(base.get(key) or {}), value)
        elif value is not None:
            base[key] = value
    return base


def _sweep(
    config: Path | None,
    space: str,
    overrides: dict[str, Any],
    study_overrides: dict[str, Any],
    split_overrides: dict[str, Any],
) -> None:
    from blocks.workspace import WorkspaceConfig
    from flows.sweep import SweepParams, sweep
    from tasks.space import load_space

    settings, sections, source = _settings(
        config, "sweep", overrides, {"study": study_overrides, "split": split_overrides}
    )
    settings["space"] = "auto" if space == "auto" else load_space(space)
    params = validated(SweepParams, settings, source)
    summary = sweep(params, WorkspaceConfig.from_mapping(sections, source))
    result = summary.sweep
    table = Table(title=f"sweep {result.study}: best first ({result.metric}, {result.goal})")
    for column in ("rank", "trial", "family", "state", result.metric, "steps", "params"):
        table.add_column(column)
    for row in result.leaderboard[:10]:
        value = "" if row.value is None else f"{row.value:.4f}"
        chosen = ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in row.params.items())
        table.add_row(str(row.rank or ""), str(row.trial), row.family, row.state, value, str(row.steps), chosen)
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
    _print_summary(summary.training)


def _score(config: Path | None, overrides: dict[str, Any]) -> None:
    from blocks.workspace import WorkspaceConfig
    from flows.scoring import ScoringParams, batch_scoring

    settings, sections, source = _settings(config, "scoring", overrides, {})
    params = validated(ScoringParams, settings, source)
    summary = batch_scoring(params, WorkspaceConfig.from_mapping(sections, source))
    manifest = summary.manifest
    if summary.already_published:
        out.print(f"Already scored by an earlier run (run key {manifest.run_key}); nothing to do.")
    out.print(
        f"Scored {manifest.rows_in:,} rows from {len(manifest.inputs)} files with {manifest.model.name} "
        f"v{manifest.model.version}: {manifest.rows_out:,} written, {manifest.rows_errored:,} errored, "
        f"{manifest.files_errored} unreadable files ({manifest.rows_per_second:,.0f} rows/s"
        + (f"; {manifest.batches_resumed} of {manifest.batches} batches resumed" if manifest.batches_resumed else "")
        + ")",
        soft_wrap=True,
    )
    out.print(f"Output: {manifest.output}", soft_wrap=True)
    if manifest.rows_errored or manifest.files_errored:
        out.print(f"Errors: {manifest.errors}", soft_wrap=True)


def _demo(rows: int, drift: float) -> None:
    from mlpipe.workspace import workspace_home

    path = workspace_home() / "demo" / f"credit-{rows}-drift{drift:g}.parquet"
    if not path.exists():
        _generate(path, rows, drift, seed=0, columns=18)
    out.print(f"[bold]Demo data:[/] {path} ({rows:,} loan applications, label 'default')")
    overrides = {
        "data": str(path),
        "target": "default",
        "name": "credit-default",
        "time_column": "applied_at",
        "exclude": ["application_id"],
    }
    _train(None, overrides, {}, {})
    home = workspace_home()
    out.print(
        "\n[bold]Where to look[/]\n"
        f"  MLflow runs and registry:  mlflow ui --backend-store-uri sqlite:///{home / 'mlflow.db'}\n"
        f"  Prefect flow runs:         prefect server start  (then http://127.0.0.1:4200)\n"
        f"  Dataset snapshots:         {home / 'datastore' / 'datasets'}\n"
        "  Run `make demo` again: unchanged steps are served from cache and no new version is made."
    )


def _generate(output: Path, rows: int, drift: float, seed: int, columns: int) -> None:
    from mlpipe.demo_data import credit_default

    frame = credit_default(rows=rows, seed=seed, drift=drift, columns=columns)
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp")
    if output.suffix == ".csv":
        frame.to_csv(temporary, index=False)
    elif output.suffix in (".parquet", ".pq"):
        frame.to_parquet(temporary, index=False)
    else:
        raise ConfigError(f"{output}: unknown file type '{output.suffix}', expected .parquet or .csv")
    temporary.replace(output)
    out.print(f"wrote {rows:,} rows × {frame.shape[1]} columns to {output}")


def _print_summary(summary: "TrainingSummary") -> None:
    table = Table(title=f"{summary.model_name} v{summary.version}", show_header=True)
    table.add_column("metric")
    table.add_column("test", justify="right")
    for metric, value in summary.metrics.items():
        table.add_row(metric, f"{value:.4f}")
    out.print(table)
    verdict = "[green]passed[/]" if summary.gate.passed else "[yellow]rejected[/]"
    out.print(f"Gate {verdict}: {summary.gate.reason}")
    out.print(f"Aliases: {', '.join(summary.aliases) or 'none'}")
    out.print(f"Dataset: {summary.dataset.source} ({summary.dataset.rows:,} rows, sha256 {summary.dataset.short_hash})")
    out.print(f"MLflow run: {summary.mlflow_run}")


def _run(action: Any) -> None:
    """Run a command; errors become one line on stderr and exit code 1.

    Errors mlpipe raises name the file, column or field already; anything else (an unreachable
    tracking server, a bug) is shown as its type and message, with the traceback when
    `MLPIPE_DEBUG=1`.
    """
    try:
        action()
    except MlpipeError as error:
        err.print(f"[red]error:[/] {error}", soft_wrap=True, highlight=False)
        sys.exit(1)
    except Exception as error:
        if os.environ.get("MLPIPE_DEBUG") == "1":
            raise
        err.print(f"[red]error:[/] {type(error).__name__}: {error}", soft_wrap=True, highlight=False)
        sys.exit(1)
