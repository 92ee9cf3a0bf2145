"""Immutable, content-addressed Parquet snapshots and the references that point at them."""

import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from pydantic import BaseModel, ConfigDict

from mlpipe.blocks.datastore import Datastore
from mlpipe.redaction import redact
from mlpipe.tasks.storage import hidden_temporary


class DatasetRef(BaseModel):
    """A Parquet snapshot in the datastore, addressed by the hash of its content.

    This is what flows between tasks instead of a DataFrame: cheap to hash for cache keys,
    cheap to send to a Dask worker, and enough to log as an MLflow run input.
    """

    model_config = ConfigDict(frozen=True)

    uri: str
    content_hash: str
    columns: dict[str, str]
    rows: int
    source: str

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]

    def outputs_present(self, inputs: Mapping[str, Any]) -> bool:
        """Whether the snapshot is still in the datastore the task wrote it to (a cached ref must not outlive it)."""
        store = next((value for value in inputs.values() if isinstance(value, Datastore)), None)
        if store is None:
            fs, path = url_to_fs(self.uri)
            return bool(fs.exists(path))
        fs, _ = store.filesystem()
        return bool(fs.exists(snapshot_path(store, self.content_hash)))


def snapshot_path(store: Datastore, content_hash: str) -> str:
    """Where the snapshot with this content hash lives inside the datastore."""
    _, root = store.filesystem()
    return f"{root}/datasets/{content_hash}.parquet"


def write_snapshot(table: pa.Table, store: Datastore, source: str, content_hash: str | None = None) -> DatasetRef:
    """Write `table` once under its content hash, atomically (see `write_snapshot_batches`)."""
    return write_snapshot_batches([table], table.schema, store, source, lambda: content_hash)


def write_snapshot_batches(
    batches: Iterable[pa.Table | pa.RecordBatch],
    schema: pa.Schema,
    store: Datastore,
    source: str,
    content_hash: Callable[[], str | None] = lambda: None,
) -> DatasetRef:
    """Write `batches` (each a row group) once under their content hash, atomically, holding one batch at a time.

    The hash is the SHA-256 of the Parquet bytes, computed as they are written, unless `content_hash`
    returns one once the batches are consumed (ingest hashes the source's bytes as it reads them).
    The file is written under a hidden temporary name and renamed onto its hash; a snapshot that
    exists is left untouched (same hash, same content), so re-runs and retries are idempotent and
    an error (a bad block, a full disk) never leaves a file under a real name.
    """
    fs, root = store.filesystem()
    fs.makedirs(f"{root}/datasets", exist_ok=True)
    staged = hidden_temporary(f"{root}/datasets/snapshot.parquet")
    try:
        with fs.open(staged, "wb") as handle:
            sink = HashingFile(handle)
            with pq.ParquetWriter(sink, schema, compression="zstd") as writer:
                rows = 0
                for group in _row_groups_of(batches):
                    writer.write_table(group)
                    rows += group.num_rows
        digest = content_hash() or sink.hexdigest()
        path = snapshot_path(store, digest)
        if not fs.exists(path):
            fs.mv(staged, path)
    finally:
        if fs.exists(staged):
            fs.rm(staged)
    return DatasetRef(
        uri=fs.unstrip_protocol(path),
        content_hash=digest,
        columns=pandas_dtypes(schema),
        rows=rows,
        source=redact(source),  # a label shown in tags, artifacts and output: never a token
    )


ROW_GROUP_BYTES = 16 << 20
"""Batches are gathered into row groups of about this much Arrow memory: few enough to read fast, small to hold."""


def _row_groups_of(batches: Iterable[pa.Table | pa.RecordBatch]) -> Iterator[pa.Table]:
    """The batches gathered into row groups of about `ROW_GROUP_BYTES` (the same groups for the same batches)."""
    gathered: list[pa.Table] = []
    size = 0
    for batch in batches:
        gathered.append(batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch]))
        size += batch.nbytes
        if size >= ROW_GROUP_BYTES:
            yield pa.concat_tables(gathered)
            gathered, size = [], 0
    if gathered:
        yield pa.concat_tables(gathered)


class HashingFile:
    """A file that hashes the bytes passing through it, read or written, so data is hashed in the one pass that
    parses or writes it (Arrow's readers and Parquet writers need only read, or write, tell and flush)."""

    closed = False

    def __init__(self, handle: BinaryIO) -> None:
        self._handle = handle
        self._digest = hashlib.sha256()
        self.passed = 0
        """Bytes read or written so far."""

    def _count(self, data: bytes) -> bytes:
        self._digest.update(data)
        self.passed += len(data)
        return data

    def read(self, size: int = -1) -> bytes:
        return self._count(self._handle.read(size))

    def write(self, data: bytes) -> int:
        return self._handle.write(self._count(data))

    def tell(self) -> int:
        return self.passed

    def flush(self) -> None:
        self._handle.flush()

    def close(self) -> None:
        """The caller closes the underlying file."""

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def hexdigest(self) -> str:
        return self._digest.hexdigest()


def read_table(ref: DatasetRef, store: Datastore, columns: list[str] | None = None) -> pa.Table:
    """Load a snapshot (or some of its columns) as an Arrow table."""
    fs, _ = store.filesystem()
    with fs.open(snapshot_path(store, ref.content_hash), "rb") as handle:
        return pq.read_table(handle, columns=columns)


def read_schema(ref: DatasetRef, store: Datastore) -> pa.Schema:
    """A snapshot's Arrow schema, from its footer."""
    fs, _ = store.filesystem()
    with fs.open(snapshot_path(store, ref.content_hash), "rb") as handle:
        return pq.read_schema(handle)


def row_groups(ref: DatasetRef, store: Datastore) -> Iterator[pa.Table]:
    """A snapshot's row groups in order, one at a time: how steps go through data that need not be held whole."""
    fs, _ = store.filesystem()
    with fs.open(snapshot_path(store, ref.content_hash), "rb") as handle:
        parquet = pq.ParquetFile(handle)
        for group in range(parquet.num_row_groups):
            yield parquet.read_row_group(group)


def read_snapshot(ref: DatasetRef, store: Datastore, columns: list[str] | None = None) -> pd.DataFrame:
    """Load a snapshot as a DataFrame."""
    return read_table(ref, store, columns).to_pandas()


def pandas_dtypes(schema: pa.Schema) -> dict[str, str]:
    """The pandas dtype of each column, as users see them in `df.dtypes`."""
    empty = schema.empty_table().to_pandas()
    return {str(name): str(dtype) for name, dtype in empty.dtypes.items()}
