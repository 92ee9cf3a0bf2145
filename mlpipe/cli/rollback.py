"""`mlpipe rollback`: move `champion` back to an earlier version, recording who, why and when.

It reads and writes only the registry: no pipeline library (scikit-learn, great-expectations,
Dask) is imported, so it answers in the time MLflow's client takes.
"""

from typing import Annotated

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import out, run


def rollback(
    name: Annotated[str, typer.Argument(help="registered model name")],
    to: Annotated[str | None, typer.Option(help="version to make champion (default: the one it replaced)")] = None,
    reason: Annotated[str, typer.Option(help="why, for the alias history")] = "manual rollback",
    config: Annotated[opt.ConfigFile, opt.config_option("mlflow")] = None,
) -> None:
    """Move `champion` back to an earlier version, recording who, why and when."""

    def move() -> None:
        from mlpipe.blocks.config import run_config
        from mlpipe.tasks.registry.aliases import alias_history
        from mlpipe.tasks.registry.aliases import rollback as roll_back

        tracking = run_config(config).workspace.resolve().mlflow
        change = roll_back(name, tracking, to, reason)
        out.print(f"{name}: champion is now version {change.version} (was {change.previous}).")
        for entry in alias_history(name, tracking)[-5:]:
            out.print(f"  {entry.at}  v{entry.previous or '-'} → v{entry.version}  by {entry.by}: {entry.reason}")

    run(move)
