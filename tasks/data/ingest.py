"""Ingest: a CSV or Parquet file (local or any fsspec URL) → an immutable Parquet snapshot."""

import hashlib
from collections.abc import Callable

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import DataError
from mlpipe.tasks.caching import CACHED, SourceFingerprint, pipeline_task
from mlpipe.tasks.datasets import DatasetRef, write_snapshot

CSV_SUFFIXES = (".csv", ".csv.gz", ".csv.bz2", ".csv.zst")
PARQUET_SUFFIXES = (".parquet", ".pq")
COMPRESSIONS = {"gz": "gzip", "bz2": "bz2", "zst": "zstd"}


def ingest(source: str, store: Datastore) -> DatasetRef:
    """Snapshot `source` into the datastore, addressed by the SHA-256 of its bytes.

    Raises:
        DataError: the file is missing, unreadable, empty, of an unknown type or not parseable.
    """
    parse = _parser_for(source)
    raw = read_bytes(source)
    if not raw:
        raise DataError(f"{source}: file is empty")
    table = parse(raw, source)
    if table.num_rows == 0:
        raise DataError(f"{source}: no data rows (only a header or an empty table)")
    return write_snapshot(table, store, source, content_hash=hashlib.sha256(raw).hexdigest())


def read_bytes(source: str) -> bytes:
    """The whole file, with errors that name the URL."""
    try:
        fs, path = url_to_fs(source)
    except (ValueError, ImportError) as error:
        raise DataError(f"{source}: cannot open this URL ({error})") from None
    try:
        with fs.open(path, "rb") as handle:
            return handle.read()
    except FileNotFoundError:
        raise DataError(f"{source}: file not found") from None
    except IsADirectoryError:
        raise DataError(f"{source}: is a directory, expected a CSV or Parquet file") from None
    except PermissionError:
        raise DataError(f"{source}: permission denied") from None


def _parser_for(source: str) -> Callable[[bytes, str], pa.Table]:
    name = source.lower().split("?")[0]
    if name.endswith(CSV_SUFFIXES):
        return _parse_csv
    if name.endswith(PARQUET_SUFFIXES):
        return _parse_parquet
    suffix = name.rsplit("/", 1)[-1].rpartition(".")[2] or "(none)"
    raise DataError(f"{source}: unknown file type '.{suffix}', expected one of {CSV_SUFFIXES + PARQUET_SUFFIXES}")


def _parse_csv(raw: bytes, source: str) -> pa.Table:
    suffix = source.lower().split("?")[0].rpartition(".")[2]
    stream = pa.input_stream(pa.BufferReader(raw), compression=COMPRESSIONS.get(suffix))
    try:
        return pacsv.read_csv(stream)
    except pa.ArrowInvalid as error:
        raise DataError(f"{source}: not a valid CSV file ({error})") from None


def _parse_parquet(raw: bytes, source: str) -> pa.Table:
    try:
        return pq.read_table(pa.BufferReader(raw))
    except (pa.ArrowInvalid, OSError) as error:
        raise DataError(f"{source}: not a valid Parquet file ({error})") from None


ingest_task = pipeline_task(ingest, cache_policy=CACHED + SourceFingerprint(parameter="source"))
