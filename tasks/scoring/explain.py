"""Per-row explanations of a registered model on the rows of a file: what `mlpipe explain` prints or writes.

The model is pinned and loaded as batch scoring does (`resolve_model`, `load_model`), and the rows
are read, checked against the model's signature and parsed by the same readers, so a row is
explained exactly as it would be scored.
"""

from collections.abc import Iterator

import pandas as pd
import pyarrow as pa

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError, DataError
from mlpipe.tasks.data.columns import InputColumn, check_schema, coerce
from mlpipe.tasks.data.files import list_inputs, read_blocks, read_layout
from mlpipe.tasks.model.explanation import contributions, unexplained
from mlpipe.tasks.registry.model_ref import load_model, resolve_model
from mlpipe.tasks.storage import write_bytes, write_parquet
from mlpipe.workspace import available_cores

OUTPUT_SUFFIXES = (".parquet", ".csv")


def explain_rows(reference: str, location: str, rows: int, tracking: MlflowConnection) -> pd.DataFrame:
    """The first `rows` rows at `location`, each with its contribution per input column, `bias` and `margin`.

    Raises:
        ConfigError: the model does not exist or has no exact contributions (its family, its classes).
        DataError: a file lacks an input column, holds it with the wrong type, or has a cell that does not parse.
    """
    model = resolve_model(reference, tracking)
    loaded = load_model(model, tracking, available_cores())
    reason = unexplained(loaded)
    if reason:
        elsewhere = (
            f". `mlpipe card {reference}` ranks its input columns by permutation importance" if model.name else ""
        )
        raise ConfigError(f"model '{reference}' cannot be explained row by row: {reason}{elsewhere}")
    blocks = list(_parsed(location, model.inputs, rows))
    if not blocks:
        raise DataError(f"{location}: no rows to explain")
    frame = pd.concat(blocks, ignore_index=True).head(rows)
    return contributions(loaded, frame[[column.name for column in model.inputs]]).reset_index(drop=True)


def _parsed(location: str, inputs: list[InputColumn], rows: int) -> Iterator[pd.DataFrame]:
    """Blocks of rows as the model takes them, until `rows` are read; a cell that does not parse is an error."""
    files = [read_layout(file, mini_batch_size=rows, first_index=0) for file in list_inputs(location)]
    for described, _ in files:
        if described.problem:
            raise DataError(f"{described.url}: {described.problem}")
    check_schema([described for described, _ in files], inputs, passthrough=[])
    read = 0
    for described, batches in files:
        for batch in batches:
            for table, first_row in read_blocks(batch, [column.name for column in inputs]):
                frame, errors = coerce(table, inputs, first_row, described.url, text=described.format == "csv")
                if errors:
                    raise DataError(f"{described.url}: row {errors[0]['source_row']}: {errors[0]['reason']}")
                yield frame
                read += len(frame)
                if read >= rows:
                    return


def write_contributions(frame: pd.DataFrame, output: str) -> None:
    """Parquet or CSV by the suffix of `output` (a local path or any fsspec URL), written whole or not at all."""
    if output.lower().endswith(".csv"):
        write_bytes(output, frame.to_csv(index=False).encode())
    else:
        write_parquet(pa.Table.from_pandas(frame, preserve_index=False), output)


def check_output(output: str) -> None:
    """Fail before any work when the output's format cannot be told from its suffix."""
    if not output.lower().endswith(OUTPUT_SUFFIXES):
        raise ConfigError(f"--output '{output}': expected a file name ending in .parquet or .csv")
