"""Immutable, content-addressed Parquet snapshots and the references that point at them.

A snapshot is one file, `datasets/<hash>.parquet`, or, for data too large to go through one
worker, a partitioned dataset: a folder `datasets/<hash>/` of Parquet parts with a manifest
(`_manifest.json`) listing each part's rows and hash. Any Parquet reader (pyarrow, Dask, Spark)
reads the folder as one table; mlpipe's steps read it part by part.
"""

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
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
    parts: tuple[str, ...] = ()
    """The part files (in the folder named by `content_hash`) this reference reads, in order; none for one file.

    A reference to some of a dataset's parts is how one partition goes to a task of its own."""
    part_rows: tuple[int, ...] = ()
    """The rows of each of `parts`."""

    @property
    def short_hash(self) -> str:
        return self.content_hash[:12]

    @property
    def partitioned(self) -> bool:
        return bool(self.parts)

    def outputs_present(self, inputs: Mapping[str, Any]) -> bool:
        """Whether the snapshot is still in the datastore the task wrote it to (a cached ref must not outlive it)."""
        store = next((value for value in inputs.values() if isinstance(value, Datastore)), None)
        if store is None:
            fs, path = url_to_fs(self.uri)
            return bool(fs.exists(path))
        fs, _ = store.filesystem()
        return all(fs.exists(path) for path in data_files(self, store))


def snapshot_path(store: Datastore, content_hash: str) -> str:
    """Where the one-file snapshot with this content hash lives inside the datastore."""
    _, root = store.filesystem()
    return f"{root}/datasets/{content_hash}.parquet"


def data_files(ref: DatasetRef, store: Datastore) -> list[str]:
    """The Parquet files `ref` reads, in order, as paths in the datastore's filesystem."""
    if not ref.partitioned:
        return [snapshot_path(store, ref.content_hash)]
    _, root = store.filesystem()
    return [f"{root}/datasets/{ref.content_hash}/{part}" for part in ref.parts]


def partitions(ref: DatasetRef) -> list[DatasetRef]:
    """A reference to each part of a partitioned dataset, in order (a one-file snapshot is its own only part)."""
    if not ref.partitioned:
        return [ref]
    return [
        ref.model_copy(update={"parts": (part,), "part_rows": (rows,), "rows": rows, "source": f"{ref.source} {part}"})
        for part, rows in zip(ref.parts, ref.part_rows, strict=True)
    ]


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
    """Write `batches` once under their content hash, atomically, holding one row group at a time.

    The hash is the SHA-256 of the Parquet bytes, computed as they are written, unless `content_hash`
    returns one once the batches are consumed (ingest hashes the source's bytes as it reads them).
    See `SnapshotWriter` for what is atomic about it.
    """
    with SnapshotWriter(store, schema) as writer:
        for batch in batches:
            writer.add(batch)
        return writer.publish(source, content_hash())


class SnapshotWriter:
    """A snapshot written a batch at a time, then published under its content hash; a context manager.

    The file is written under a hidden temporary name and renamed onto its hash; a snapshot that
    exists is left untouched (same hash, same content), so re-runs and retries are idempotent and
    an error (a bad block, a full disk) never leaves a file under a real name: whatever was not
    published is removed on the way out. Several writers can be fed from one read of their rows,
    each in a thread of its own: Arrow encodes, compresses and writes without holding the GIL.
    """

    def __init__(self, store: Datastore, schema: pa.Schema) -> None:
        self._store, self._schema = store, schema
        self._open: ExitStack  # what `__enter__` opened, closed by `__exit__`

    def __enter__(self) -> "SnapshotWriter":
        with ExitStack() as opening:  # a file that cannot be opened leaves no staged file either
            self._fs, self._staged = opening.enter_context(_staged_snapshot(self._store))
            self._file = opening.enter_context(_ParquetFile(self._fs, self._staged, self._schema))
            self._open = opening.pop_all()
        return self

    def __exit__(self, *_: object) -> None:
        self._open.close()

    def add(self, batch: pa.Table | pa.RecordBatch) -> None:
        """Rows to write after those added before."""
        self._file.add(batch)

    def publish(self, source: str, content_hash: str | None = None) -> DatasetRef:
        """The snapshot of every row added, under `content_hash` (default: the SHA-256 of its bytes)."""
        rows, written_hash = self._file.close()
        return _publish(self._fs, self._staged, content_hash or written_hash, self._schema, rows, self._store, source)


COPY_CHUNK_BYTES = 16 << 20
"""A copied file goes through memory this much at a time."""


def copy_snapshot(
    handle: BinaryIO, schema: pa.Schema, rows: Callable[[], int], store: Datastore, source: str
) -> DatasetRef:
    """The bytes of a Parquet file, as they are, as its snapshot, named by their SHA-256 (see `write_snapshot_batches`).

    `rows` is called once the bytes are copied and before anything is published: ingest decodes the file
    then, so a file it cannot read leaves nothing under a real name.
    """
    with _staged_snapshot(store) as (fs, staged):
        with fs.open(staged, "wb") as copy:
            hashing = HashingFile(handle)
            while chunk := hashing.read(COPY_CHUNK_BYTES):
                copy.write(chunk)
        return _publish(fs, staged, hashing.hexdigest(), schema, rows(), store, source)


@contextmanager
def _staged_snapshot(store: Datastore) -> Iterator[tuple[AbstractFileSystem, str]]:
    """A hidden temporary path beside the snapshots, removed on leaving unless it was published."""
    fs, root = store.filesystem()
    fs.makedirs(f"{root}/datasets", exist_ok=True)
    staged = hidden_temporary(f"{root}/datasets/snapshot.parquet")
    try:
        yield fs, staged
    finally:
        if fs.exists(staged):
            fs.rm(staged)


def _publish(
    fs: AbstractFileSystem, staged: str, digest: str, schema: pa.Schema, rows: int, store: Datastore, source: str
) -> DatasetRef:
    """Rename the staged file onto its hash; a snapshot that exists is left untouched (same hash, same content)."""
    path = snapshot_path(store, digest)
    if not fs.exists(path):
        fs.mv(staged, path)
    return DatasetRef(
        uri=fs.unstrip_protocol(path),
        content_hash=digest,
        columns=pandas_dtypes(schema),
        rows=rows,
        source=redact(source),  # a label shown in tags, artifacts and output: never a token
    )


def _write_parquet(
    batches: Iterable[pa.Table | pa.RecordBatch], schema: pa.Schema, fs: AbstractFileSystem, path: str
) -> tuple[int, str]:
    """Write `batches` as one Parquet file at `path` (see `_ParquetFile`); its rows and SHA-256."""
    with _ParquetFile(fs, path, schema) as file:
        for batch in batches:
            file.add(batch)
        return file.close()


class _ParquetFile:
    """A zstd Parquet file written a batch at a time and hashed as it is written; the batches are gathered into row
    groups of about `ROW_GROUP_BYTES` (the same groups for the same batches). A context manager: leaving it closes
    the file, written or not."""

    def __init__(self, fs: AbstractFileSystem, path: str, schema: pa.Schema) -> None:
        self._handle = fs.open(path, "wb")
        self._hashing = HashingFile(self._handle)
        try:
            self._writer = pq.ParquetWriter(self._hashing, schema, compression="zstd")
        except BaseException:
            self._handle.close()
            raise
        self._gathered: list[pa.Table] = []
        self._gathered_bytes = 0
        self._rows = 0

    def __enter__(self) -> "_ParquetFile":
        return self

    def __exit__(self, *_: object) -> None:
        try:
            self._writer.close()
        finally:
            self._handle.close()

    def add(self, batch: pa.Table | pa.RecordBatch) -> None:
        self._gathered.append(batch if isinstance(batch, pa.Table) else pa.Table.from_batches([batch]))
        self._gathered_bytes += batch.nbytes
        if self._gathered_bytes >= ROW_GROUP_BYTES:
            self._write_gathered()

    def close(self) -> tuple[int, str]:
        """Write what is gathered and close the file; its rows and SHA-256."""
        self._write_gathered()
        self._writer.close()
        self._handle.close()
        return self._rows, self._hashing.hexdigest()

    def _write_gathered(self) -> None:
        if self._gathered:
            group = pa.concat_tables(self._gathered)
            self._writer.write_table(group)
            self._rows += group.num_rows
        self._gathered, self._gathered_bytes = [], 0


MANIFEST = "_manifest.json"
"""A partitioned dataset's list of parts; its leading underscore makes Parquet dataset readers skip it."""


class PartitionedWriter:
    """Writes a partitioned dataset part by part into a hidden folder, then publishes it under its content hash.

    Parts are published before the manifest, so a folder with a manifest is whole; a folder
    that already has one holds the same content (same hash) and is left untouched. Use as a
    context manager: whatever was not published is removed on the way out, error or not.
    """

    def __init__(self, store: Datastore) -> None:
        self._fs, root = store.filesystem()
        self._datasets = f"{root}/datasets"
        self._staging = hidden_temporary(f"{self._datasets}/partitioned")
        self._parts: list[_Part] = []
        self._written = 0

    def __enter__(self) -> "PartitionedWriter":
        self._fs.makedirs(self._staging, exist_ok=True)
        return self

    def __exit__(self, *_: object) -> None:
        if self._fs.exists(self._staging):
            self._fs.rm(self._staging, recursive=True)

    @property
    def count(self) -> int:
        """Parts written so far."""
        return len(self._parts)

    def write(self, batches: Iterable[pa.Table | pa.RecordBatch], schema: pa.Schema, label: str = "") -> int:
        """Write one part (left out if it has no rows); its rows. `label` names where its rows came from."""
        path = f"{self._staging}/{self._written:05d}.parquet"
        self._written += 1
        rows, digest = _write_parquet(batches, schema, self._fs, path)
        if rows:
            self._parts.append(_Part(path=path, rows=rows, sha256=digest, schema=schema, label=label))
        else:
            self._fs.rm(path)
        return rows

    def drop_from(self, count: int) -> None:
        """Forget the parts written after the first `count` (a file being read again)."""
        for part in self._parts[count:]:
            self._fs.rm(part.path)
        del self._parts[count:]

    def conform(self, common: Callable[[list[tuple[str, pa.Schema]]], pa.Schema]) -> pa.Schema:
        """Rewrite, cast, every part whose schema is not `common(labelled schemas)`; that schema."""
        schema = common([(part.label, part.schema) for part in self._parts])
        for index, part in enumerate(self._parts):
            if part.schema.equals(schema):
                continue
            with self._fs.open(part.path, "rb") as handle:
                parquet = pq.ParquetFile(handle)
                groups = (
                    parquet.read_row_group(group).select(schema.names).cast(schema)
                    for group in range(parquet.num_row_groups)
                )
                path = f"{self._staging}/{self._written:05d}.parquet"
                self._written += 1
                rows, digest = _write_parquet(groups, schema, self._fs, path)
            self._fs.rm(part.path)
            self._parts[index] = _Part(path=path, rows=rows, sha256=digest, schema=schema, label=part.label)
        return schema

    def publish(self, source: str, content_hash: str | None = None) -> DatasetRef:
        """The dataset, published under `content_hash` (default: the hash of its parts' hashes)."""
        if not self._parts:
            raise ValueError(f"{source}: a partitioned dataset needs at least one part with rows")
        digest = content_hash or hashlib.sha256("\n".join(p.sha256 for p in self._parts).encode()).hexdigest()
        folder = f"{self._datasets}/{digest}"
        names = [f"part-{index:05d}.parquet" for index in range(len(self._parts))]
        if not self._fs.exists(f"{folder}/{MANIFEST}"):
            self._fs.makedirs(folder, exist_ok=True)
            for name, part in zip(names, self._parts, strict=True):
                self._fs.mv(part.path, f"{folder}/{name}")
            listed = [{"file": n, "rows": p.rows, "sha256": p.sha256} for n, p in zip(names, self._parts, strict=True)]
            with self._fs.open(f"{self._staging}/{MANIFEST}", "w") as handle:
                json.dump({"parts": listed}, handle, indent=1)
            self._fs.mv(f"{self._staging}/{MANIFEST}", f"{folder}/{MANIFEST}")
        return DatasetRef(
            uri=self._fs.unstrip_protocol(folder),
            content_hash=digest,
            columns=pandas_dtypes(self._parts[0].schema),
            rows=sum(part.rows for part in self._parts),
            source=redact(source),
            parts=tuple(names),
            part_rows=tuple(part.rows for part in self._parts),
        )


@dataclass
class _Part:
    path: str
    rows: int
    sha256: str
    schema: pa.Schema
    label: str


ROW_GROUP_BYTES = 16 << 20
"""Batches are gathered into row groups of about this much Arrow memory: few enough to read fast, small to hold."""


def in_snapshot_row_groups(metadata: pq.FileMetaData) -> bool:
    """Whether a Parquet file's row groups are about those a snapshot of it would have: each but the last holding
    `ROW_GROUP_BYTES` or more (uncompressed), so that gathering its batches would leave them as they are."""
    groups = (metadata.row_group(index) for index in range(metadata.num_row_groups - 1))
    return all(group.total_byte_size >= ROW_GROUP_BYTES for group in groups)


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
    tables = []
    for path in data_files(ref, store):
        with fs.open(path, "rb") as handle:
            tables.append(pq.read_table(handle, columns=columns))
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def read_schema(ref: DatasetRef, store: Datastore) -> pa.Schema:
    """A snapshot's Arrow schema, from its (first part's) footer: every part has the same."""
    fs, _ = store.filesystem()
    with fs.open(data_files(ref, store)[0], "rb") as handle:
        return pq.read_schema(handle)


def row_groups(ref: DatasetRef, store: Datastore) -> Iterator[pa.Table]:
    """A snapshot's row groups in order, one at a time: how steps go through data that need not be held whole."""
    fs, _ = store.filesystem()
    for path in data_files(ref, store):
        with fs.open(path, "rb") as handle:
            parquet = pq.ParquetFile(handle)
            for group in range(parquet.num_row_groups):
                yield parquet.read_row_group(group)


def head_rows(ref: DatasetRef, store: Datastore, rows: int) -> pd.DataFrame:
    """The first `rows` rows (at most a row group's), read without the rest."""
    return next(row_groups(ref, store)).slice(0, rows).to_pandas()


def read_snapshot(ref: DatasetRef, store: Datastore, columns: list[str] | None = None) -> pd.DataFrame:
    """Load a snapshot as a DataFrame."""
    return read_table(ref, store, columns).to_pandas()


def pandas_dtypes(schema: pa.Schema) -> dict[str, str]:
    """The pandas dtype of each column, as users see them in `df.dtypes`."""
    empty = schema.empty_table().to_pandas()
    return {str(name): str(dtype) for name, dtype in empty.dtypes.items()}
