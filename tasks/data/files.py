"""Tabular input files: find them, read their layout, cut them into batches, and read a batch block by block.

Planning reads only file listings, Parquet footers and CSV headers, so a wrong input fails in
seconds, before any worker reads a row. Batch scoring and the drift check share these readers.
"""

import hashlib
from collections.abc import Iterator
from typing import Literal

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from pydantic import BaseModel

from mlpipe.errors import DataError
from mlpipe.tasks.storage import holds_files, source_info

Format = Literal["parquet", "csv"]


SUFFIXES: dict[str, Format] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
CSV_BLOCK_BYTES = 16 << 20
"""CSV files are parsed in blocks of this size, so memory does not grow with the file."""


class InputFile(BaseModel):
    """One input file: where it is, what it is, and its identity (fsspec's `ukey`: size and mtime, or ETag)."""

    url: str
    format: Format
    ukey: str
    rows: int | None = None
    columns: dict[str, str] = {}
    problem: str | None = None
    """Why the file cannot be read at all (a corrupt footer): it is reported, not scored."""


class Batch(BaseModel):
    """A unit of work: whole row groups of one Parquet file, or one CSV file streamed."""

    index: int
    file: InputFile
    row_groups: list[int] = []
    first_row: int = 0
    rows: int | None = None


def list_inputs(location: str) -> list[InputFile]:
    """The Parquet and CSV files at a path, directory (searched recursively) or glob, in a stable order.

    Raises:
        DataError: nothing to score there.
    """
    fs, path = url_to_fs(location)
    info = source_info(fs, path)
    if info is None:
        paths = [p for p in fs.glob(path) if _format(p)]
    elif holds_files(info):
        paths = [p for p in fs.find(path) if _format(p) and not _hidden(p, path)]
    elif info:
        paths = [path]
    else:
        raise DataError(f"{location}: no such file or directory")
    if not paths:
        raise DataError(f"{location}: no Parquet (.parquet) or CSV (.csv) files to score")
    files = []
    for found in sorted(paths):
        kind = _format(found)
        if kind is None:
            raise DataError(f"{location}: {found} is neither Parquet (.parquet) nor CSV (.csv)")
        files.append(InputFile(url=fs.unstrip_protocol(found), format=kind, ukey=fs.ukey(found)))
    return files


def read_layout(file: InputFile, mini_batch_size: int, first_index: int) -> tuple[InputFile, list[Batch]]:
    """Read the file's footer (Parquet) or header (CSV): its columns, rows and mini-batches.

    A file that cannot be read becomes a `problem` with no batches, so one corrupt file among
    many is reported by name instead of stopping the run.
    """
    try:
        if file.format == "csv":
            described = file.model_copy(update={"columns": _csv_columns(file.url)})
            return described, [Batch(index=first_index, file=described)]
        with fsspec.open(file.url, "rb") as handle:
            metadata = pq.ParquetFile(handle).metadata
            schema = metadata.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as error:
        return file.model_copy(update={"problem": f"cannot read the file: {error}"}), []
    described = file.model_copy(
        update={"rows": metadata.num_rows, "columns": {field.name: str(field.type) for field in schema}}
    )
    batches: list[Batch] = []
    groups: list[int] = []
    rows = first_row = 0
    for group in range(metadata.num_row_groups):
        groups.append(group)
        rows += metadata.row_group(group).num_rows
        if rows >= mini_batch_size or group == metadata.num_row_groups - 1:
            batch = Batch(index=first_index + len(batches), file=described, row_groups=groups, first_row=first_row)
            batches.append(batch.model_copy(update={"rows": rows}))
            first_row, groups, rows = first_row + rows, [], 0
    return described, batches


def inputs_fingerprint(files: list[InputFile]) -> str:
    """Identifies the input: every file's URL and identity, in order."""
    content = "\n".join(f"{file.url} {file.ukey}" for file in files)
    return hashlib.sha256(content.encode()).hexdigest()


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
        # The header from its own handle: a reader's read-ahead thread keeps moving a shared one.
        header = _csv_columns(batch.file.url)
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


def _csv_columns(url: str) -> dict[str, str]:
    """Column names from the header; values are parsed per row when scored, so a bad cell fails one row."""
    with fsspec.open(url, "rb") as handle:
        reader = pacsv.open_csv(handle, read_options=pacsv.ReadOptions(block_size=1 << 16))
        return {field.name: "csv" for field in reader.schema}


def _format(path: str) -> Format | None:
    return next((kind for suffix, kind in SUFFIXES.items() if path.lower().endswith(suffix)), None)


def _hidden(path: str, root: str) -> bool:
    """Files under `_…` or `.…` folders (e.g. another run's staging) are not inputs."""
    return any(part.startswith(("_", ".")) for part in path[len(root) :].split("/") if part)
