"""Immutable, content-addressed Parquet snapshots and the references that point at them."""

import hashlib
import io
from collections.abc import Mapping
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from pydantic import BaseModel, ConfigDict

from mlpipe.blocks.datastore import Datastore
from mlpipe.redaction import redact
from mlpipe.tasks.storage import write_bytes


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
    """Write `table` once under its content hash, atomically.

    The hash is the SHA-256 of the Parquet bytes unless the caller hashed the original bytes
    already. A snapshot that exists is left untouched (same hash, same content), so re-runs and
    retries are idempotent and a crash never leaves a half-written file under the real name.
    """
    buffer = io.BytesIO()
    pq.write_table(table, buffer, compression="zstd")
    content = buffer.getvalue()
    content_hash = content_hash or hashlib.sha256(content).hexdigest()
    fs, root = store.filesystem()
    path = snapshot_path(store, content_hash)
    if not fs.exists(path):
        fs.makedirs(f"{root}/datasets", exist_ok=True)
        write_bytes(path, content, fs)
    return DatasetRef(
        uri=fs.unstrip_protocol(path),
        content_hash=content_hash,
        columns=pandas_dtypes(table.schema),
        rows=table.num_rows,
        source=redact(source),  # a label shown in tags, artifacts and output: never a token
    )


def read_table(ref: DatasetRef, store: Datastore, columns: list[str] | None = None) -> pa.Table:
    """Load a snapshot as an Arrow table."""
    fs, _ = store.filesystem()
    with fs.open(snapshot_path(store, ref.content_hash), "rb") as handle:
        return pq.read_table(io.BytesIO(handle.read()), columns=columns)


def read_snapshot(ref: DatasetRef, store: Datastore, columns: list[str] | None = None) -> pd.DataFrame:
    """Load a snapshot as a DataFrame."""
    return read_table(ref, store, columns).to_pandas()


def pandas_dtypes(schema: pa.Schema) -> dict[str, str]:
    """The pandas dtype of each column, as users see them in `df.dtypes`."""
    empty = schema.empty_table().to_pandas()
    return {str(name): str(dtype) for name, dtype in empty.dtypes.items()}
