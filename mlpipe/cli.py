"""The `mlpipe` command line: train and demo (more commands arrive with their flows)."""

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
    model: Annotated[str | None, typer.Option(help="xgboost | random_forest | linear")] = None,
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
    from blocks.workspace import WorkspaceConfig, load_config_file
    from flows.training import TrainingParams, training

    sections = load_config_file(config) if config else {}
    settings = dict(sections.pop("training", None) or {})
    source = str(config) if config else "command line"
    settings.update({k: v for k, v in overrides.items() if v is not None})
    for section, values in (("model", model_overrides), ("split", split_overrides)):
        merged = dict(settings.get(section) or {})
        for key, value in values.items():
            if key == "params":
                merged["params"] = {**(merged.get("params") or {}), **value}
            elif value is not None:
                merged[key] = value
        settings[section] = merged
    params = validated(TrainingParams, settings, source)
    workspace = WorkspaceConfig.from_mapping(sections, source)
    summary = training(params, workspace)
    _print_summary(summary)


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
