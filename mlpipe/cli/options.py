"""Options more than one command takes, defined once, and the parsing of option values.

Only typer and the standard library are imported here: `mlpipe --help` builds every command's
help from these without loading any pipeline library.
"""

from pathlib import Path
from typing import Annotated, Any

import typer

from mlpipe.errors import ConfigError

FAMILIES = (
    "xgboost | random_forest | extra_trees | hist_gradient_boosting | linear | dp_logistic_regression | "
    "dp_linear_regression"
)
SAMPLERS = "grid | random | tpe"
PRUNERS = "none | median | halving | hyperband | percentile"

Data = Annotated[
    str, typer.Option(help="CSV or Parquet file, a folder of them or a glob: local path or any fsspec URL")
]
Target = Annotated[str, typer.Option(help="column to predict")]
ModelName = Annotated[str, typer.Option(help="registered model name")]
Task = Annotated[str | None, typer.Option(help="classification | regression (default: inferred)")]
TimeColumn = Annotated[str | None, typer.Option(help="timestamp column; with --time-split, split by it")]
TimeSplit = Annotated[bool, typer.Option(help="newest rows become the test set")]
Exclude = Annotated[list[str] | None, typer.Option(help="column that is not a feature (repeatable)")]
Sensitive = Annotated[
    list[str] | None,
    typer.Option(help="column whose groups the fairness report compares, not a feature (repeatable)"),
]
Contract = Annotated[str | None, typer.Option(help="data contract file to enforce")]
Seed = Annotated[int | None, typer.Option(help="seed for the split and the models (and a sweep's sampler)")]
Metric = Annotated[str | None, typer.Option(help="validation metric (default roc_auc / rmse)")]
ExitScore = Annotated[float | None, typer.Option(help="stop once the best trial reaches this score")]
Passthrough = Annotated[str | None, typer.Option(help="input columns to copy to the output: COL,COL…")]
Device = Annotated[
    str | None,
    typer.Option(
        help="cpu | cuda | auto: cuda trains xgboost on GPU workers, auto does if the cluster has any (default cpu)"
    ),
]
Pool = Annotated[str, typer.Option(help="process work pool (created if missing)")]


def config_option(sections: str) -> Any:
    """The `--config FILE` option, with the sections this command reads in its help."""
    return typer.Option(help=f"YAML with {sections} sections")


ConfigFile = Path | None


def data_options(
    data: str,
    target: str,
    name: str,
    task: str | None = None,
    time_column: str | None = None,
    exclude: list[str] | None = None,
    contract: str | None = None,
    sensitive: list[str] | None = None,
) -> dict[str, Any]:
    """The parameters every training-like flow starts from (`DataParams`), from their options."""
    return {
        "data": data,
        "target": target,
        "name": name,
        "task": task,
        "time_column": time_column,
        "exclude": exclude,
        "contract_file": contract,
        "sensitive": sensitive,
    }


def columns(listed: str | None) -> list[str] | None:
    """`COL,COL…` as a list (None when not given)."""
    return [c.strip() for c in listed.split(",") if c.strip()] if listed else None


NULLS = {"none", "null", "~"}
BOOLEANS = {"true": True, "false": False}


def parse_params(pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` pairs, typed: `none`/`null` → None, `true`/`false`, integers, floats (`1e-5`), else text."""
    params: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--param '{pair}': expected KEY=VALUE")
        if value.strip()[:1] in ("[", "{"):
            raise ConfigError(f"--param '{pair}': expected a single value, not a list or mapping")
        params[key.strip()] = parse_value(value.strip())
    return params


def parse_value(text: str) -> bool | int | float | str | None:
    """One option value, typed as a user means it."""
    lowered = text.lower()
    if not text or lowered in NULLS:
        return None
    if lowered in BOOLEANS:
        return BOOLEANS[lowered]
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            continue
    return text
