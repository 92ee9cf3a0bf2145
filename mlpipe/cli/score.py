"""`mlpipe score`: score Parquet or CSV files with a registered model on Dask, exactly once."""

from pathlib import Path
from typing import Annotated, Any

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import out, run
from mlpipe.cli.startup import preparing_flow


def score(
    model: Annotated[str, typer.Option(help="NAME@ALIAS, NAME/VERSION or an MLflow model URI")],
    input: Annotated[str, typer.Option(help="Parquet/CSV file, directory or glob; local or any fsspec URL")],
    output: Annotated[str, typer.Option(help="output folder (partitioned Parquet); local or any fsspec URL")],
    mini_batch_size: Annotated[int | None, typer.Option(help="rows per batch (default 1,000,000)")] = None,
    max_concurrency: Annotated[int | None, typer.Option(help="batches in flight (default: worker threads)")] = None,
    error_threshold: Annotated[
        int | None, typer.Option(help="errored rows + unreadable files allowed (default 0; -1: any)")
    ] = None,
    mode: Annotated[
        str | None,
        typer.Option(help="append | overwrite: replace the partitions scoring published in OUTPUT (default append)"),
    ] = None,
    passthrough: opt.Passthrough = None,
    partition: Annotated[str | None, typer.Option(help="output partition value (default: the run key)")] = None,
    config: Annotated[opt.ConfigFile, opt.config_option("mlflow/datastore/cluster/scoring")] = None,
) -> None:
    """Score Parquet or CSV files with a registered model on Dask, into a partitioned Parquet dataset."""
    options: dict[str, Any] = {
        "model": model,
        "input": input,
        "output": output,
        "mini_batch_size": mini_batch_size,
        "max_concurrency": max_concurrency,
        "error_threshold": error_threshold,
        "mode": mode,
        "passthrough": opt.columns(passthrough),
        "partition": partition,
    }
    run(lambda: _score(config, options))


def _score(config: Path | None, options: dict[str, Any]) -> None:
    with preparing_flow():
        from mlpipe.blocks.config import run_config
        from mlpipe.errors import validated
        from mlpipe.flows.scoring import ScoringParams, batch_scoring

        settings = run_config(config, "scoring", options)
        params = validated(ScoringParams, settings.params, settings.source)
    summary = batch_scoring(params, settings.workspace)
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
