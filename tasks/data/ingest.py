"""Ingest: a CSV or Parquet file, a folder of them or a glob (local or any fsspec URL) → an immutable snapshot.

Files are streamed, never held whole: CSV block by block (`CSV_BLOCK_BYTES`), Parquet row group
by row group, each written as a row group of the snapshot while its bytes are hashed; a Parquet
file whose row groups are already a snapshot's is copied as it is (`_snapshot_parquet`). A folder
or a glob becomes a partitioned dataset, a part per file; so does a file of `PARTITION_FILE_BYTES`
or more, a part per `PART_BYTES` of its rows, so that later steps can spread it over workers.
"""

import csv
import hashlib
import io
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO, TypeVar

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import DataError
from mlpipe.tasks.caching import CACHED, SourceFingerprint, pipeline_task
from mlpipe.tasks.data.files import list_inputs
from mlpipe.tasks.datasets import (
    DatasetRef,
    HashingFile,
    PartitionedWriter,
    copy_snapshot,
    in_snapshot_row_groups,
    write_snapshot_batches,
)
from mlpipe.tasks.storage import holds_files, source_info

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSIONS = {"gz": "gzip", "bz2": "bz2", "zst": "zstd"}
HASH_CHUNK_BYTES = 16 << 20
CSV_BLOCK_BYTES = 1 << 20
"""CSV is parsed in blocks of this size (Arrow's default). Arrow reads several blocks ahead, so larger blocks
cost memory many times over (16 MB blocks held 270 MB); row groups are gathered from the blocks when written."""

PARTITION_FILE_BYTES = 512 << 20
"""A file this large or larger is ingested as a partitioned dataset."""
PART_BYTES = 256 << 20
"""About this much Arrow memory of a large file's rows goes into each part: one part is what a task holds."""

WIDER_TYPES = [
    pa.null(),
    pa.int64(),
    pa.bool_(),
    pa.float64(),
    pa.date32(),
    pa.time32("s"),
    pa.timestamp("s"),
    pa.timestamp("ns"),
    pa.string(),
    pa.binary(),
]
"""Arrow's CSV type inference, narrowest first: a column whose later block does not fit is read as the next."""

_CONVERSION_ERROR = re.compile(r"In CSV column #(\d+): .*CSV conversion error to ([^:]+): invalid value '(.*)'$", re.S)


def ingest(source: str, store: Datastore) -> DatasetRef:
    """Snapshot `source` into the datastore, addressed by the SHA-256 of its bytes (of each file's, for several).

    Memory stays at a few blocks whatever the file's size. The snapshot holds the rows and column
    types that reading the whole file at once gives: a CSV column whose later values do not fit
    the type inferred from the first block is read again with the next wider type, as Arrow's
    whole-file reader would have widened it. Files of a folder are parts of one dataset, in name
    order; a column typed differently in two files takes the wider type in all.

    Raises:
        DataError: a file is missing, unreadable, empty, of an unknown type or not parseable, or
            the files of a folder do not have the same columns.
    """
    try:
        fs, path = url_to_fs(source)
    except (ValueError, ImportError) as error:
        raise DataError(f"{source}: cannot open this URL ({error})") from None
    info = source_info(fs, path)
    if holds_files(info):
        return _ingest_files(source, [file.url for file in list_inputs(source)], store)
    if ((info or {}).get("size") or 0) >= PARTITION_FILE_BYTES:
        return _ingest_files(source, [source], store)
    if _is_csv(source):
        return _read_csv(source, lambda b, s, h: write_snapshot_batches(b, s, store, source, h))
    return _snapshot_parquet(source, store)


def _snapshot_parquet(source: str, store: Datastore) -> DatasetRef:
    """A Parquet file's snapshot: the file's own bytes when its row groups are already a snapshot's, else rewritten.

    Re-encoding such a file would only spend time writing the same rows in the same groups (0.8 s of
    a 1M-row file's 1.1 s ingest), so its bytes are copied as they are hashed. Each row group is
    still decoded once before the copy is published: a file that cannot be read fails here, naming
    it, and leaves nothing. A file of small row groups is rewritten in larger ones, as a CSV is.
    """
    with open_source(source) as handle:
        parquet = _parquet_file(handle, source)
        if in_snapshot_row_groups(parquet.metadata):
            handle.seek(0)
            return copy_snapshot(handle, parquet.schema_arrow, lambda: _decoded_rows(parquet, source), store, source)
    return _read_parquet(source, lambda b, s, h: write_snapshot_batches(b, s, store, source, h))


Written = TypeVar("Written")
Sink = Callable[[Iterable[pa.RecordBatch | pa.Table], pa.Schema, Callable[[], str]], Written]
"""Where a file's batches go: given them, their schema and (once they are consumed) the file's hash."""


def _read_file(source: str, sink: Sink[Written]) -> Written:
    return _read_csv(source, sink) if _is_csv(source) else _read_parquet(source, sink)


def _ingest_files(source: str, files: list[str], store: Datastore) -> DatasetRef:
    """One partitioned dataset of `files`: a part per file, or per `PART_BYTES` of a large file's rows."""
    with PartitionedWriter(store) as writer:
        digests = [_read_file(file, _parts_into(writer, file)) for file in files]
        writer.conform(lambda schemas: _common_schema(schemas, files))
        content_hash = digests[0] if len(digests) == 1 else hashlib.sha256("\n".join(digests).encode()).hexdigest()
        return writer.publish(source, content_hash)


def _parts_into(writer: PartitionedWriter, file: str) -> Sink[str]:
    """A sink writing `file`'s batches as parts; read again (a CSV column widened), it replaces them."""
    first = writer.count

    def sink(batches: Iterable[pa.RecordBatch | pa.Table], schema: pa.Schema, digest: Callable[[], str]) -> str:
        writer.drop_from(first)
        for part in _in_parts(iter(batches), PART_BYTES):
            writer.write(part, schema, file)
        return digest()

    return sink


def _in_parts(batches: Iterator[pa.RecordBatch | pa.Table], part_bytes: int) -> Iterator[Iterator[pa.Table]]:
    """The batches cut into consecutive parts of about `part_bytes` each; each part is consumed before the next."""
    pending = next(batches, None)

    def part() -> Iterator[pa.Table]:
        nonlocal pending
        size = 0
        while pending is not None and size < part_bytes:
            batch = pending
            size += batch.nbytes
            yield batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch])
            pending = next(batches, None)

    while pending is not None:
        yield part()


def _common_schema(schemas: list[tuple[str, pa.Schema]], files: list[str]) -> pa.Schema:
    """The schema every part takes: the first file's columns, each of the widest type any file gave it.

    Raises:
        DataError: a file whose columns differ from the first file's, or a column whose types cannot meet.
    """
    first = schemas[0][1]
    for part, schema in schemas:
        if set(schema.names) != set(first.names):
            raise DataError(
                f"{part}: columns {sorted(schema.names)} differ from the first file's {sorted(first.names)} "
                f"({files[0]}); every file of a dataset needs the same columns"
            )
    fields = []
    for field in first:
        types = {str(schema.field(field.name).type): schema.field(field.name).type for _, schema in schemas}
        fields.append(pa.field(field.name, _widest(field.name, list(types.values()), files)))
    return pa.schema(fields)


def _widest(column: str, types: list[pa.DataType], files: list[str]) -> pa.DataType:
    names = [str(kind) for kind in WIDER_TYPES]
    if all(str(kind) in names for kind in types):
        return WIDER_TYPES[max(names.index(str(kind)) for kind in types)]
    try:
        return pa.unify_schemas([pa.schema([(column, kind)]) for kind in types], promote_options="permissive")[0].type
    except (pa.ArrowTypeError, pa.ArrowInvalid):
        raise DataError(
            f"{files[0]}…: column '{column}' has types {[str(kind) for kind in types]} in different files"
        ) from None


@contextmanager
def open_source(source: str) -> Iterator[BinaryIO]:
    """The file, opened for reading, with errors that name the URL."""
    try:
        fs, path = url_to_fs(source)
    except (ValueError, ImportError) as error:
        raise DataError(f"{source}: cannot open this URL ({error})") from None
    try:
        with fs.open(path, "rb") as handle:
            yield handle
    except FileNotFoundError:
        raise DataError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{source}: is a directory, expected a CSV or Parquet file") from None
    except PermissionError:
        raise DataError(f"{source}: permission denied") from None


def _is_csv(source: str) -> bool:
    name = source.lower().split("?")[0]
    if name.endswith(CSV_SUFFIXES):
        return True
    if name.endswith(PARQUET_SUFFIXES):
        return False
    suffix = name.rsplit("/", 1)[-1].rpartition(".")[2] or "(none)"
    raise DataError(f"{source}: unknown file type '.{suffix}', expected one of {CSV_SUFFIXES + PARQUET_SUFFIXES}")


def _whole_file_hash(hashing: HashingFile) -> Callable[[], str]:
    """The hash of the whole file, once the parser is done: reads what it left unread (nothing, normally)."""

    def digest() -> str:
        while hashing.read(HASH_CHUNK_BYTES):
            pass
        return hashing.hexdigest()

    return digest


def _read_csv(source: str, sink: Sink[Written]) -> Written:
    column_types: dict[str, pa.DataType] = {}
    while True:
        try:
            return _write_csv(source, sink, column_types)
        except pa.ArrowInvalid as error:
            wider = _wider_type(error, _csv_header(source))
            if wider is None:
                raise DataError(f"{source}: not a valid CSV file ({error})") from None
            column_types = {**column_types, **wider}


def _write_csv(source: str, sink: Sink[Written], column_types: dict[str, pa.DataType]) -> Written:
    with open_source(source) as handle:
        hashing = HashingFile(handle)
        try:
            reader = pacsv.open_csv(
                _decompressed(hashing, source),
                read_options=pacsv.ReadOptions(block_size=CSV_BLOCK_BYTES),
                convert_options=pacsv.ConvertOptions(column_types=column_types),
            )
        except pa.ArrowInvalid:
            if hashing.passed == 0:
                raise DataError(f"{source}: file is empty") from None
            raise
        return sink(_with_rows(reader, source), reader.schema, _whole_file_hash(hashing))


def _decompressed(handle: BinaryIO | HashingFile, source: str) -> pa.NativeFile:
    suffix = source.lower().split("?")[0].rpartition(".")[2]
    return pa.input_stream(handle, compression=COMPRESSIONS.get(suffix))


def _csv_header(source: str) -> list[str]:
    with open_source(source) as handle:
        text = io.TextIOWrapper(_decompressed(handle, source), encoding="utf-8", newline="")
        return next(csv.reader(text), [])


def _wider_type(error: pa.ArrowInvalid, header: list[str]) -> dict[str, pa.DataType] | None:
    """The type to read again a column whose value did not fit its inferred type (None for other errors).

    Past the type that failed and at least the type of the value itself, so one pass finds it.
    """
    found = _CONVERSION_ERROR.search(str(error))
    if found is None or int(found.group(1)) >= len(header):
        return None
    names = [str(kind) for kind in WIDER_TYPES]
    failed, value = found.group(2), found.group(3)
    past = names.index(failed) + 1 if failed in names else names.index("string")
    single = io.StringIO()
    csv.writer(single).writerows([["value"], [value]])
    own = str(pacsv.read_csv(io.BytesIO(single.getvalue().encode())).schema.field(0).type)
    position = max(past, names.index(own) if own in names else past)
    return {header[int(found.group(1))]: WIDER_TYPES[position]} if position < len(WIDER_TYPES) else None


def _with_rows(batches: Iterable[pa.RecordBatch | pa.Table], source: str) -> Iterator[pa.RecordBatch | pa.Table]:
    """The batches, failing (before anything is published) when none has rows."""
    rows = 0
    for batch in batches:
        rows += batch.num_rows
        yield batch
    if rows == 0:
        raise DataError(f"{source}: no data rows (only a header or an empty table)")


def _read_parquet(source: str, sink: Sink[Written]) -> Written:
    with open_source(source) as handle:
        digest = _whole_file_hash(HashingFile(handle))()  # Parquet is read from its footer: hashed in a pass first
        parquet = _parquet_file(handle, source)
        groups = _with_rows(_row_groups(parquet, source), source)
        return sink(groups, parquet.schema_arrow, lambda: digest)


def _decoded_rows(parquet: pq.ParquetFile, source: str) -> int:
    """The file's rows, each row group decoded once: a corrupt page fails here, naming the file."""
    return sum(group.num_rows for group in _with_rows(_row_groups(parquet, source), source))


def _parquet_file(handle: BinaryIO, source: str) -> pq.ParquetFile:
    """The file's Parquet metadata, read from its footer, with errors that name it."""
    if handle.seek(0, io.SEEK_END) == 0:
        raise DataError(f"{source}: file is empty")
    handle.seek(0)
    try:
        return pq.ParquetFile(handle)
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{source}: not a valid Parquet file ({error})") from None


def _row_groups(parquet: pq.ParquetFile, source: str) -> Iterator[pa.Table]:
    for group in range(parquet.num_row_groups):
        try:
            table = parquet.read_row_group(group)
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{source}: not a valid Parquet file ({error})") from None
        yield table


ingest_task = pipeline_task(ingest, cache_policy=CACHED + SourceFingerprint(parameter="source"))
