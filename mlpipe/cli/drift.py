"""`mlpipe drift`: check new data for drift against the champion's training data."""

from typing import Annotated

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import out, run
from mlpipe.cli.startup import preparing_flow


def drift(
    model: Annotated[str, typer.Option(help="registered model name (its champion is checked), or NAME@ALIAS")],
    current: Annotated[str, typer.Option(help="new data: Parquet/CSV file, directory or glob; local or fsspec URL")],
    reference: Annotated[str | None, typer.Option(help="default: the champion's training data")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the whole result as JSON")] = False,
    config: Annotated[opt.ConfigFile, opt.config_option("mlflow/cluster/drift")] = None,
) -> None:
    """Check new data for drift against the champion's training data; emits Prefect events."""

    def check() -> None:
        from rich.table import Table

        with preparing_flow():
            from mlpipe.blocks.config import run_config
            from mlpipe.errors import validated
            from mlpipe.flows.drift import DriftParams, drift_check
            from mlpipe.tasks.monitoring.report import feature_table, verdict

            name, _, alias = model.partition("@")  # as `score --model` takes it
            options = {"model": name, "alias": alias or None, "current": current, "reference": reference}
            settings = run_config(config, options=options)
            params = validated(DriftParams, settings.params, settings.source)
        summary = drift_check(params, settings.workspace)
        if as_json:
            out.print_json(summary.model_dump_json())
            return
        table = Table(title=f"drift: {summary.model.name} v{summary.model.version}")
        rows = feature_table(summary)
        for column in rows[0]:
            table.add_column(column)
        for row in rows:
            table.add_row(*(f"{v:.4g}" if isinstance(v, float) else "" if v is None else str(v) for v in row.values()))
        out.print(table)
        for signal in summary.quality:
            out.print(f"quality: {signal.feature}: {signal.signal}: {signal.detail}", soft_wrap=True)
        colour = "red" if summary.drifted else "green"
        out.print(f"[{colour}]{verdict(summary)}[/]; MLflow run {summary.mlflow_run_id}", soft_wrap=True)
        out.print(f"weights: {summary.data.weighting}", soft_wrap=True)

    run(check)
