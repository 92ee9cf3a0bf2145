"""`mlpipe gc`: remove snapshots, scoring staging and cached results that nothing references.

It reads the registry and the datastore only: no pipeline library is imported.
"""

import os
from pathlib import Path
from typing import Annotated

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import out, run


def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only say what would be removed")] = False,
    output: Annotated[
        list[str] | None, typer.Option(help="scoring output whose abandoned _staging runs to remove (repeatable)")
    ] = None,
    min_age_hours: Annotated[
        float, typer.Option(min=0, help="keep anything written more recently: a run in progress may need it")
    ] = 24.0,
    config: Annotated[opt.ConfigFile, opt.config_option("datastore and mlflow")] = None,
) -> None:
    """Remove snapshots no registered model version references, abandoned scoring staging and stale cached results."""

    def sweep() -> None:
        from mlpipe.blocks.config import run_config
        from mlpipe.tasks import gc as garbage

        workspace = run_config(config).workspace.resolve()
        results = Path(os.environ["PREFECT_RESULTS_LOCAL_STORAGE_PATH"])
        found = garbage.plan(workspace.datastore, workspace.mlflow, results, output or [], min_age_hours * 3600)
        if not dry_run:
            garbage.collect(found)
        verb = "would free" if dry_run else "freed"
        for kind, (count, size) in found.counts().items():
            out.print(f"{kind}: {count} ({size:,} bytes)")
        out.print(
            f"{verb} {found.bytes:,} bytes in {len(found.items)} item(s); "
            f"kept {found.kept_snapshots} snapshot(s) that registered versions or recent runs use."
        )

    run(sweep)
