"""Score one mini-batch on a Dask worker: read it block by block, predict, write one output part atomically.

A part is written under a temporary name and renamed when complete, then a small `done`
record is written the same way; a batch counts as finished only once that record exists and
the parts it names are there. A worker that dies mid-batch leaves at most a temporary file,
and the batch is simply run again.

Only input that cannot be decoded (a malformed CSV row, a corrupt row group: `ArrowInvalid`)
is a data error, recorded in the errors part like a cell that does not parse. Anything else —
an I/O error, a full disk, the model failing — says nothing about the rows: the batch fails
with no `done` record, the run fails, and a re-run of the same command scores it then.
"""

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from pydantic import BaseModel
from threadpoolctl import threadpool_limits

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import MlpipeError
from mlpipe.tasks.data.columns import InputColumn, coerce, error_record
from mlpipe.tasks.data.files import Batch, InputFile, read_blocks
from mlpipe.tasks.metrics import SCORED_BY
from mlpipe.tasks.registry.model_ref import ResolvedModel, load_model
from mlpipe.tasks.storage import atomic_write, write_json, write_parquet


class BatchResult(BaseModel):
    """What scoring one batch did: rows in, out and errored."""

    index: int
    file: str
    rows_in: int
    rows_out: int
    rows_errored: int
    seconds: float
    error: str | None = None
    """Why the whole batch could not be decoded (a corrupt row group, a malformed CSV row)."""


class BatchFailed(MlpipeError):
    """A batch could not be scored for a reason other than its data (I/O, a full disk, the model): left pending."""


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
        parts = {url_to_fs(self.path(kind, 0))[1].rsplit("/", 1)[0]: kind for kind in ("data", "errors")}
        present = {
            (kind, path.rsplit("/", 1)[-1]) for folder, kind in parts.items() for path in fs.ls(folder, detail=False)
        }
        results = {}
        for path in fs.glob(f"{root}/part-*.json"):
            with fs.open(path, "r") as handle:
                result = BatchResult.model_validate_json(handle.read())
            needed = [kind for kind, rows in (("data", result.rows_out), ("errors", result.rows_errored)) if rows]
            if all((kind, f"part-{result.index:05d}.parquet") in present for kind in needed):
                results[result.index] = result  # a record without its parts is not trusted: the batch runs again
        return results


def score_batch(
    batch: Batch,
    model: ResolvedModel,
    tracking: MlflowConnection,
    staging: Staging,
    passthrough: list[str],
    threads: int,
) -> BatchResult:
    """Score `batch` into its output part; unparseable rows go to its errors part with the reason.

    Raises:
        BatchFailed: anything but undecodable input (I/O, a full disk, the model); no `done` record is written.
    """
    with _pending_on_failure(batch):
        started = time.perf_counter()
        predictor = load_model(model, tracking, threads)
        needed = [column.name for column in model.inputs] + [c for c in passthrough if c not in _names(model.inputs)]
        errors: list[dict[str, Any]] = []
        rows_in = rows_out = 0
        error = None
        try:
            with atomic_write(staging.path("data", batch.index)) as part, part.fs.open(part.path, "wb") as sink:
                writer: pq.ParquetWriter | None = None
                for table, first_row in _decoded(batch, needed):
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
                part.keep = writer is not None  # a batch with no scorable rows writes no part
        except _Undecodable as failure:
            error = str(failure)
            rows_in = batch.rows if batch.rows is not None else max(rows_in, 1)
            rows_out = 0
            errors = [error_record(batch.file.url, batch.first_row, rows_in, f"the batch could not be read: {error}")]
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
        write_json(staging.path("done", batch.index, "json"), result.model_dump())  # last: the parts are in place
        return result


class _Undecodable(Exception):
    """The batch's input could not be decoded: its rows are data errors, not a reason to fail the run."""


def _decoded(batch: Batch, needed: list[str]) -> Iterator[tuple[pa.Table, int]]:
    """`read_blocks`, with decoding failures (and only those) told apart from I/O errors."""
    blocks = read_blocks(batch, needed)
    while True:
        try:
            block = next(blocks)
        except StopIteration:
            return
        except pa.ArrowInvalid as failure:
            raise _Undecodable(f"{type(failure).__name__}: {failure}") from failure
        yield block


@contextmanager
def _pending_on_failure(batch: Batch) -> Iterator[None]:
    """Any failure but undecodable input becomes `BatchFailed`, naming the batch; no `done` record is written."""
    try:
        yield
    except Exception as failure:
        raise BatchFailed(
            f"batch {batch.index} ({batch.file.url}, from row {batch.first_row}) failed: "
            f"{type(failure).__name__}: {failure}. It is not recorded as done: run the same command again "
            "to score it (finished batches are kept)"
        ) from failure


ERROR_SCHEMA = pa.schema(
    [("source_file", pa.string()), ("source_row", pa.int64()), ("rows", pa.int64()), ("reason", pa.string())]
)


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
    for column, value in zip(SCORED_BY, (model.name, model.version), strict=True):
        columns[column] = _constant(value, rows)
    return pa.table(columns)


def _constant(value: str, rows: int) -> pa.DictionaryArray:
    return pa.DictionaryArray.from_arrays(pa.array(np.zeros(rows, dtype=np.int32)), pa.array([value]))


def _names(inputs: list[InputColumn]) -> set[str]:
    return {column.name for column in inputs}


def check_errors(done: dict[int, BatchResult], problems: list[InputFile], threshold: int) -> None:
    """Raise once errored rows plus unreadable files exceed the threshold (-1: never).

    Raises:
        MlpipeError: naming the first files and why; nothing of the run is published.
    """
    errors = sum(r.rows_errored for r in done.values()) + len(problems)
    if threshold < 0 or errors <= threshold:
        return
    reasons = [f"{file.url}: {file.problem}" for file in problems[:3]]
    reasons += [
        f"{r.file}: {r.error or f'{r.rows_errored} rows could not be parsed'}" for r in done.values() if r.rows_errored
    ][:3]
    raise MlpipeError(
        f"{errors} errors (errored rows + unreadable files) exceed error_threshold {threshold}; "
        f"nothing was published. {'; '.join(reasons)}"
    )


def record_unreadable(problems: list[InputFile], staging: Staging) -> None:
    """One error row per input file that could not be read at all, beside the batches' errors."""
    if not problems:
        return
    unreadable = [{"source_file": f.url, "source_row": None, "rows": None, "reason": f.problem} for f in problems]
    write_parquet(pa.Table.from_pylist(unreadable, schema=ERROR_SCHEMA), f"{staging.url}/errors/unreadable.parquet")
