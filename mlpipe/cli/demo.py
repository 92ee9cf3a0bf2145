"""`mlpipe demo` and `mlpipe generate`: seeded demo credit-default data, and the training pipeline on it."""

import os
from pathlib import Path
from typing import Annotated

import typer

from mlpipe.cli.output import out, run
from mlpipe.cli.temporary_api import TEMPORARY_API
from mlpipe.cli.train import train_model

DEMO_ROWS = 100_000


def demo(
    rows: Annotated[int, typer.Option(help="rows of demo data")] = DEMO_ROWS,
    drift: Annotated[float, typer.Option(help="0..1: how far the demo data drifts")] = 0.0,
) -> None:
    """Generate demo credit-default data and run the training pipeline on it."""
    run(lambda: _demo(rows, drift))


def generate(
    output: Annotated[Path, typer.Argument(help="file to write (.parquet or .csv)")],
    rows: Annotated[int, typer.Option(help="number of rows")] = DEMO_ROWS,
    drift: Annotated[float, typer.Option(help="0..1: shifted distributions and relationships")] = 0.0,
    seed: Annotated[int, typer.Option(help="random seed")] = 0,
    columns: Annotated[int, typer.Option(help="total columns (≥ 18; extra ones are numeric signals)")] = 18,
) -> None:
    """Write a demo credit-default dataset."""
    run(lambda: write_demo_data(output, rows, drift, seed, columns))


def _demo(rows: int, drift: float) -> None:
    from mlpipe.workspace import workspace_home

    home = workspace_home()
    path = home / "demo" / f"credit-{rows}-drift{drift:g}.parquet"
    if not path.exists():
        write_demo_data(path, rows, drift, seed=0, columns=18)
    out.print(f"[bold]Demo data:[/] {path} ({rows:,} loan applications, label 'default')")
    options = {
        "data": str(path),
        "target": "default",
        "name": "credit-default",
        "time_column": "applied_at",
        "exclude": ["application_id"],
    }
    train_model(None, options)
    out.print("\n[bold]Where to look[/]\n" + where_to_look(), highlight=False)


def where_to_look() -> str:
    """The MLflow store, Prefect API and datastore the run used (environment and workspace defaults)."""
    from prefect.settings import PREFECT_API_URL

    from mlpipe.blocks.workspace import WorkspaceConfig

    workspace = WorkspaceConfig().resolve()
    tracking = workspace.mlflow.tracking_uri or ""
    if not tracking.startswith(("http://", "https://")):
        tracking = f"mlflow ui --backend-store-uri {tracking}"
    api = None if os.environ.get(TEMPORARY_API) == "1" else PREFECT_API_URL.value()  # gone when the demo ends
    prefect = (
        api.removesuffix("/").removesuffix("/api") if api else "prefect server start  (then http://127.0.0.1:4200)"
    )
    return (
        f"  MLflow runs and registry:  {tracking}\n"
        f"  Prefect flow runs:         {prefect}\n"
        f"  Dataset snapshots:         {workspace.datastore.url}/datasets\n"
        "  Run `make demo` again: unchanged steps are served from cache and no new version is made."
    )


def write_demo_data(output: Path, rows: int, drift: float, seed: int, columns: int) -> None:
    """Generate the data and write it atomically as Parquet or CSV (by the file's suffix)."""
    from mlpipe.demo_data import credit_default
    from mlpipe.errors import ConfigError
    from mlpipe.tasks.storage import atomic_write

    if output.suffix not in (".csv", ".parquet", ".pq"):
        raise ConfigError(f"{output}: unknown file type '{output.suffix}', expected .parquet or .csv")
    frame = credit_default(rows=rows, seed=seed, drift=drift, columns=columns)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(str(output.resolve())) as staged:
        if output.suffix == ".csv":
            frame.to_csv(staged.path, index=False)
        else:
            frame.to_parquet(staged.path, index=False)
    out.print(f"wrote {rows:,} rows × {frame.shape[1]} columns to {output}")
