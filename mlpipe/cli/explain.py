"""`mlpipe explain`: each row's contribution per input column to a registered model's margin.

It runs here, with no flow and no cluster: the model is loaded from the registry and the rows
are read from the file, so it answers in the seconds that loading them takes.
"""

from typing import TYPE_CHECKING, Annotated

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import out, run

if TYPE_CHECKING:
    import pandas as pd

SHOWN_ROWS = 20
SHOWN_FEATURES = 3


def explain(
    model: Annotated[str, typer.Option(help="NAME@ALIAS, NAME/VERSION or an MLflow model URI")],
    data: Annotated[str, typer.Option(help="Parquet/CSV file, directory or glob; local or any fsspec URL")],
    rows: Annotated[int, typer.Option(min=1, help="explain the first N rows")] = 1_000,
    output: Annotated[
        str | None, typer.Option(help="write every row's contributions, bias and margin here (.parquet or .csv)")
    ] = None,
    config: Annotated[opt.ConfigFile, opt.config_option("mlflow")] = None,
) -> None:
    """Explain rows: each input column's contribution to the model's margin (xgboost: SHAP; linear models)."""

    def explain_file() -> None:
        from mlpipe.blocks.config import run_config
        from mlpipe.tasks.scoring.explain import check_output, explain_rows, write_contributions

        if output:
            check_output(output)
        tracking = run_config(config).workspace.resolve().mlflow
        frame = explain_rows(model, data, rows, tracking)
        if output:
            write_contributions(frame, output)
            out.print(f"Wrote {len(frame):,} rows × {frame.shape[1] - 2} features, bias and margin to {output}")
            return
        _print_top(frame)

    run(explain_file)


def _print_top(frame: "pd.DataFrame") -> None:
    """The largest contributions of the first rows, by size, with the margin they add up to."""
    from rich.table import Table

    from mlpipe.tasks.model.explanation import BIAS, MARGIN

    features = [name for name in frame.columns if name not in (BIAS, MARGIN)]
    table = Table(title=f"largest contributions to the margin (first {min(len(frame), SHOWN_ROWS)} rows)")
    for column in ("row", MARGIN, BIAS, *(f"#{rank}" for rank in range(1, SHOWN_FEATURES + 1))):
        table.add_column(column, justify="left" if column.startswith("#") else "right")
    for row, values in frame.head(SHOWN_ROWS).iterrows():
        largest = values[features].abs().sort_values(ascending=False).index[:SHOWN_FEATURES]
        table.add_row(
            str(row), f"{values[MARGIN]:.4f}", f"{values[BIAS]:.4f}", *(f"{n} {values[n]:+.4f}" for n in largest)
        )
    out.print(table)
    if len(frame) > SHOWN_ROWS:
        out.print(f"… {len(frame) - SHOWN_ROWS:,} more rows; --output FILE writes every row and feature")
