"""Score one mini-batch on a Dask worker: read it block by block, predict, write one output part atomically.

A part is written under a temporary name and renamed when complete, then a small `done`
record is written the same way; a batch counts as finished only once that record exists. A
worker that dies mid-batch leaves at most a temporary file, and the batch is simply run again.
"""

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import fsspec
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from pydantic import BaseModel
from threadpoolctl import threadpool_limits

from blocks.mlflow import MlflowConnection
from tasks.batches import NUMERIC, Batch
from tasks.model_ref import InputColumn, ResolvedModel

CSV_BLOCK_BYTES = 16 << 20
"""CSV files are parsed in blocks of this size, so memory does not grow with the file."""


class BatchResult(BaseModel):
    """What scoring one batch did: rows in, out and errored."""

    index: int
    file: str
    rows_in: int
    rows_out: int
    rows_errored: int
    seconds: float
    error: str | None = None
    """Why the whole batch failed (a corrupt row group, an unreadable file)."""


class Staging(BaseModel):
    """Where a run writes its parts before they are published: `<output>/_staging/<run key>/`."""

    url: str

    def path(self, kind: str, index: int, suffix: str = "parquet") -> str:
        return f"{self.url}/{kind}/part-{index:05d}.{suffix}"

    def prepare(self) -> None:
        fs, root = url_to_fs(self.url)
        for kind in ("data", "errors", "done"):
            fs.makedirs(f"{root}/{kind}", exist_ok=True)

    def finished(self) -> dict[int, BatchResult]:
        """The batches whose `done` record exists, from an earlier attempt of the same run."""
        fs, root = url_to_fs(f"{self.url}/done")
        if not fs.exists(root):
            return {}
        results = {}
        for path in fs.glob(f"{root}/part-*.json"):
            with fs.open(path, "r") as handle:
                result = BatchResult.model_validate_json(handle.read())
            results[result.index] = result
        return results


def score_batch(
    batch: Batch,
    model: ResolvedModel,
    tracking: MlflowConnection,
    staging: Staging,
    passthrough: list[str],
    threads: int,
) -> BatchResult:
    """Score `batch` into its output part; unparseable rows go to its errors part with the reason."""
    started = time.perf_counter()
    predictor = load_model(model, tracking, threads)
    needed = [column.name for column in model.inputs] + [c for c in passthrough if c not in _names(model.inputs)]
    errors: list[dict[str, Any]] = []
    rows_in = rows_out = 0
    temporary = hidden_temporary(staging.path("data", batch.index))
    fs, _ = url_to_fs(temporary)
    writer: pq.ParquetWriter | None = None
    try:
        with fs.open(temporary, "wb") as sink:
            for table, first_row in read_blocks(batch, needed):
                frame, bad = coerce(table, model.inputs, first_row, batch.file.url, text=batch.file.format == "csv")
                errors.extend(bad)
                rows_in += table.num_rows
                if frame.empty:
                    continue
                with threadpool_limits(threads):
                    predictions = predictor.predict(None, frame[[c.name for c in model.inputs]])
                out = _output(frame, predictions, passthrough, batch.file.url, model)
                writer = writer or pq.ParquetWriter(sink, out.schema)
                writer.write_table(out)
                rows_out += out.num_rows
            if writer is not None:
                writer.close()
        if writer is not None:
            fs.mv(temporary, staging.path("data", batch.index))
        error = None
    except (OSError, pa.ArrowException, ValueError) as failure:
        error = f"{type(failure).__name__}: {failure}"
        rows_in = batch.rows if batch.rows is not None else max(rows_in, 1)
        rows_out = 0
        errors = [_error(batch.file.url, batch.first_row, rows_in, f"the batch could not be read: {error}")]
    finally:
        if fs.exists(temporary):
            fs.rm(temporary)
    if errors:
        write_parquet(pa.Table.from_pylist(errors, schema=ERROR_SCHEMA), staging.path("errors", batch.index))
    result = BatchResult(
        index=batch.index,
        file=batch.file.url,
        rows_in=rows_in,
        rows_out=rows_out,
        rows_errored=sum(e["rows"] for e in errors),
        seconds=time.perf_counter() - started,
        error=error,
    )
    write_json(staging.path("done", batch.index, "json"), result.model_dump())
    return result


ERROR_SCHEMA = pa.schema(
    [("source_file", pa.string()), ("source_row", pa.int64()), ("rows", pa.int64()), ("reason", pa.string())]
)


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
    errors = [_error(source, int(row), 1, reason) for row, reason in bad[failed_rows].items()]
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


def read_blocks(batch: Batch, needed: list[str]) -> Iterator[tuple[pa.Table, int]]:
    """The batch's rows in blocks (a row group, or a CSV block), each with its first row number."""
    with fsspec.open(batch.file.url, "rb") as handle:
        if batch.file.format == "parquet":
            parquet = pq.ParquetFile(handle)
            present = [name for name in needed if name in parquet.schema_arrow.names]
            first_row = batch.first_row
            for group in batch.row_groups:
                table = parquet.read_row_group(group, columns=present)
                yield table, first_row
                first_row += table.num_rows
            return
        header = pacsv.open_csv(handle, read_options=pacsv.ReadOptions(block_size=1 << 16)).schema.names
        handle.seek(0)
        present = [name for name in needed if name in header]
        reader = pacsv.open_csv(
            handle,
            read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
            convert_options=pacsv.ConvertOptions(
                include_columns=present, column_types={name: pa.string() for name in present}
            ),
        )
        first_row = 0
        for record_batch in reader:
            yield pa.Table.from_batches([record_batch]), first_row
            first_row += record_batch.num_rows


def _output(
    frame: pd.DataFrame, predictions: pd.DataFrame, passthrough: list[str], source: str, model: ResolvedModel
) -> pa.Table:
    """Row identity (passthrough columns, or source file and row), predictions, and the model that made them.

    Columns that hold one value for the whole part are dictionary-encoded: a few bytes, not a string per row.
    """
    rows = len(frame)
    if passthrough:
        columns = {name: pa.Array.from_pandas(frame[name]) for name in passthrough}
    else:
        columns = {"source_file": _constant(source, rows), "source_row": pa.array(frame.index.to_numpy(np.int64))}
    columns.update({name: pa.Array.from_pandas(values) for name, values in predictions.items()})
    columns["model_name"] = _constant(model.name, rows)
    columns["model_version"] = _constant(model.version, rows)
    return pa.table(columns)


def _constant(value: str, rows: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([value]))


def _error(source: str, row: int, rows: int, reason: str) -> dict[str, Any]:
    return {"source_file": source, "source_row": row, "rows": rows, "reason": reason}


def hidden_temporary(url: str) -> str:
    """A temporary name beside `url` that dataset readers skip (a leading dot), unique per attempt."""
    folder, name = url.rsplit("/", 1)
    return f"{folder}/.{name}.{uuid.uuid4().hex}.tmp"


def write_parquet(table: pa.Table, url: str) -> None:
    """Write a Parquet file under a temporary name and rename it: readers see all of it or nothing."""
    fs, path = url_to_fs(url)
    temporary = hidden_temporary(path)
    pq.write_table(table, temporary, filesystem=fs)
    fs.mv(temporary, path)


def _names(inputs: list[InputColumn]) -> set[str]:
    return {column.name for column in inputs}


_MODELS: dict[tuple[str, int], Any] = {}
_MODELS_LOCK = threading.Lock()


def load_model(model: ResolvedModel, tracking: MlflowConnection, threads: int) -> Any:
    """The model's python object, loaded once per worker (and per thread budget) for every batch it scores."""
    key = (model.uri, threads)
    with _MODELS_LOCK:
        if key not in _MODELS:
            import mlflow

            with tracking.session():
                loaded = mlflow.pyfunc.load_model(model.uri).unwrap_python_model()
            estimator = loaded.pipeline.steps[-1][1]
            if "n_jobs" in estimator.get_params():
                estimator.set_params(n_jobs=threads)
            _MODELS[key] = loaded
        return _MODELS[key]


def write_json(url: str, content: dict[str, Any]) -> None:
    """Write a JSON document under a temporary name and rename it: readers see all of it or nothing."""
    fs, path = url_to_fs(url)
    temporary = hidden_temporary(path)
    with fs.open(temporary, "w") as handle:
        json.dump(content, handle, indent=2, default=str)
    fs.mv(temporary, path)
