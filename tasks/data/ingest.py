"""Ingest: a CSV or Parquet file (local or any fsspec URL) → an immutable Parquet snapshot.

The file is streamed, never held whole: CSV block by block (`CSV_BLOCK_BYTES`), Parquet row group
by row group, each written as a row group of the snapshot while its bytes are hashed.
"""

import csv
import io
import re
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import BinaryIO

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import DataError
from mlpipe.tasks.caching import CACHED, SourceFingerprint, pipeline_task
from mlpipe.tasks.datasets import DatasetRef, HashingFile, write_snapshot_batches

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSIONS = {"gz": "gzip", "bz2": "bz2", "zst": "zstd"}
HASH_CHUNK_BYTES = 16 << 20
CSV_BLOCK_BYTES = 1 << 20
"""CSV is parsed in blocks of this size (Arrow's default). Arrow reads several blocks ahead, so larger blocks
cost memory many times over (16 MB blocks held 270 MB); row groups are gathered from the blocks when written."""

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
    """Snapshot `source` into the datastore, addressed by the SHA-256 of its bytes.

    Memory stays at a few blocks whatever the file's size. The snapshot holds the rows and column
    types that reading the whole file at once gives: a CSV column whose later values do not fit
    the type inferred from the first block is read again with the next wider type, as Arrow's
    whole-file reader would have widened it.

    Raises:
        DataError: the file is missing, unreadable, empty, of an unknown type or not parseable.
    """
    if _is_csv(source):
        return _ingest_csv(source, store)
    return _ingest_parquet(source, store)


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


def _ingest_csv(source: str, store: Datastore) -> DatasetRef:
    column_types: dict[str, pa.DataType] = {}
    while True:
        try:
            return _write_csv(source, store, column_types)
        except pa.ArrowInvalid as error:
            wider = _wider_type(error, _csv_header(source))
            if wider is None:
                raise DataError(f"{source}: not a valid CSV file ({error})") from None
            column_types = {**column_types, **wider}


def _write_csv(source: str, store: Datastore, column_types: dict[str, pa.DataType]) -> DatasetRef:
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
        return write_snapshot_batches(
            _with_rows(reader, source), reader.schema, store, source, _whole_file_hash(hashing)
        )


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


def _ingest_parquet(source: str, store: Datastore) -> DatasetRef:
    with open_source(source) as handle:
        digest = _whole_file_hash(HashingFile(handle))()  # Parquet is read from its footer: hashed in a pass first
        if handle.tell() == 0:
            raise DataError(f"{source}: file is empty")
        handle.seek(0)
        try:
            parquet = pq.ParquetFile(handle)
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{source}: not a valid Parquet file ({error})") from None
        groups = _with_rows(_row_groups(parquet, source), source)
        return write_snapshot_batches(groups, parquet.schema_arrow, store, source, lambda: digest)


def _row_groups(parquet: pq.ParquetFile, source: str) -> Iterator[pa.Table]:
    for group in range(parquet.num_row_groups):
        try:
            table = parquet.read_row_group(group)
        except (pa.ArrowInvalid, OSError) as error:
            raise DataError(f"{source}: not a valid Parquet file ({error})") from None
        yield table


ingest_task = pipeline_task(ingest, cache_policy=CACHED + SourceFingerprint(parameter="source"))
