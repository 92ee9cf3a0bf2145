"""A model's input columns, checked against files before any work and parsed from text row by row.

The columns come from the model's MLflow signature: a file that lacks one, or holds it with a
type the model cannot take, fails before anything runs; a CSV cell that cannot be parsed costs
its row, not the file.
"""

from typing import Any

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel

from mlpipe.errors import DataError
from mlpipe.tasks.data.files import InputFile

NUMERIC = {"long", "integer", "double", "float"}


class InputColumn(BaseModel):
    """One column of the model's input signature."""

    name: str
    type: str
    """MLflow's type name: long, integer, double, float, string, boolean, datetime…"""
    required: bool = True


def check_schema(files: list[InputFile], inputs: list[InputColumn], passthrough: list[str]) -> list[str]:
    """Every readable file against the model's signature; returns the extra columns (allowed, reported).

    Raises:
        DataError: a required column is missing or has a type the model cannot take, named with its file.
    """
    extra: set[str] = set()
    expected = {column.name: column for column in inputs}
    for file in files:
        if file.problem:
            continue
        for column in inputs:
            if column.name not in file.columns:
                if column.required:
                    raise DataError(f"{file.url}: column '{column.name}' is missing (the model needs it)")
                continue
            found = file.columns[column.name]
            if file.format == "parquet" and not compatible(found, column.type):
                raise DataError(f"{file.url}: column '{column.name}' has type {found}; the model expects {column.type}")
        for name in passthrough:
            if name not in file.columns:
                raise DataError(f"{file.url}: passthrough column '{name}' is missing")
        extra.update(name for name in file.columns if name not in expected and name not in passthrough)
    return sorted(extra)


def compatible(arrow_type: str, mlflow_type: str) -> bool:
    """Whether a Parquet column of `arrow_type` can feed a signature column of `mlflow_type`."""
    kind = arrow_type.removeprefix("dictionary<values=").split(",")[0].split("[")[0]
    if mlflow_type in NUMERIC:
        return kind.startswith(("int", "uint", "float", "double", "halffloat", "decimal")) or kind == "null"
    if mlflow_type == "string":
        return kind in ("string", "large_string", "large_utf8", "utf8", "null")
    if mlflow_type == "boolean":
        return kind in ("bool", "null")
    if mlflow_type == "datetime":
        return kind.startswith(("timestamp", "date")) or kind == "null"
    return True


def coerce(
    table: pa.Table, inputs: list[InputColumn], first_row: int, source: str, text: bool
) -> tuple[pd.DataFrame, list[dict[str, Any]]]:
    """The rows as the model takes them, and one error record per row a value of which cannot be parsed.

    Parquet columns arrive typed (checked before the run) and pass as they are; CSV cells
    (`text`) arrive as strings and are parsed here, column by column, so one bad cell costs its
    row and not the file.
    """
    frame = table.to_pandas()
    frame.index = pd.RangeIndex(first_row, first_row + len(frame))
    for column in inputs:
        if column.name not in frame.columns:
            frame[column.name] = None
    if not text:
        return frame, []
    bad = pd.Series("", index=frame.index, dtype=object)
    for column in inputs:
        text_values = frame[column.name]
        parsed, failed = _parse(text_values, column)
        frame[column.name] = parsed
        for row in failed[failed & (bad == "")].index:
            bad[row] = f"column '{column.name}': {text_values[row]!r} is not a valid {column.type}"
    failed_rows = bad != ""
    errors = [error_record(source, int(row), 1, reason) for row, reason in bad[failed_rows].items()]
    return frame[~failed_rows], errors


def _parse(values: pd.Series, column: InputColumn) -> tuple[pd.Series, pd.Series]:
    """(parsed values, rows whose text could not be parsed)."""
    present = values.notna() & (values.astype(str).str.strip() != "")
    if column.type in NUMERIC:
        parsed = pd.to_numeric(values.where(present), errors="coerce")
        if column.type in ("long", "integer") and not parsed[present].isna().any():
            parsed = parsed.astype("float64") if parsed.isna().any() else parsed.astype("int64")
    elif column.type == "boolean":
        lowered = values.astype(str).str.strip().str.lower()
        parsed = lowered.map({"true": True, "false": False, "1": True, "0": False}).where(present)
    elif column.type == "datetime":
        parsed = pd.to_datetime(values.where(present), errors="coerce")
    else:
        return values.where(present), pd.Series(False, index=values.index)
    return parsed, present & parsed.isna()


def error_record(source: str, row: int, rows: int, reason: str) -> dict[str, Any]:
    return {"source_file": source, "source_row": row, "rows": rows, "reason": reason}
