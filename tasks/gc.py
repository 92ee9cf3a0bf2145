"""Garbage collection: snapshots, scoring staging and cached results that nothing needs any more.

What is kept:
- every snapshot a registered model version references: its dataset (`mlpipe.dataset_hash`) and
  its training run's inputs (the train, validation and test splits MLflow logged, and the
  `mlpipe.train_split_hash` tag);
- anything written within `min_age` (a run in progress may be about to reference it);
- cached Prefect results whose snapshots are all kept (a result pointing at a removed or missing
  snapshot would only be a stale hit, so it goes with it).

What goes: other snapshots, hidden temporary files of interrupted writes, scoring staging folders
(`OUTPUT/_staging/<run key>/`) untouched for `min_age`, and the cached results described above.
"""

import base64
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path

from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.tasks.scoring_layout import STAGING
from mlpipe.tasks.storage import child


class Garbage(BaseModel):
    """One file or folder to remove, and why."""

    kind: str
    path: str
    bytes: int


class Collection(BaseModel):
    """What a collection removes (or, on a dry run, would remove)."""

    items: list[Garbage]
    kept_snapshots: int

    @property
    def bytes(self) -> int:
        return sum(item.bytes for item in self.items)

    def counts(self) -> dict[str, tuple[int, int]]:
        """Per kind: how many items and bytes."""
        found: dict[str, tuple[int, int]] = {}
        for item in self.items:
            count, size = found.get(item.kind, (0, 0))
            found[item.kind] = (count + 1, size + item.bytes)
        return found


def referenced_snapshots(tracking: MlflowConnection) -> tuple[set[str], set[str]]:
    """Full hashes and logged digests (hash prefixes) of the snapshots every registered model version references."""
    client = tracking.client()
    hashes: set[str] = set()
    digests: set[str] = set()
    for version in client.search_model_versions():
        if "mlpipe.dataset_hash" in version.tags:
            hashes.add(version.tags["mlpipe.dataset_hash"])
        if not version.run_id:
            continue
        run = client.get_run(version.run_id)
        if "mlpipe.train_split_hash" in run.data.tags:
            hashes.add(run.data.tags["mlpipe.train_split_hash"])
        inputs = run.inputs.dataset_inputs if run.inputs else []
        digests.update(str(given.dataset.digest) for given in inputs if given.dataset.digest)
    return hashes, digests


def plan(
    store: Datastore, tracking: MlflowConnection, results: Path, staging_outputs: list[str], min_age: float
) -> Collection:
    """What `collect` would remove; removes nothing. `min_age` is in seconds."""
    fs, root = store.filesystem()
    hashes, digests = referenced_snapshots(tracking)
    cutoff = time.time() - min_age
    items: list[Garbage] = []
    kept: set[str] = set()
    for path, info in _files(fs, f"{root}/datasets"):
        name = path.rsplit("/", 1)[-1]
        content_hash = name.removesuffix(".parquet")
        referenced = content_hash in hashes or content_hash[:16] in digests
        if _mtime(info) >= cutoff or (referenced and not name.startswith(".")):
            kept.add(content_hash)
        else:
            items.append(
                Garbage(kind="snapshot", path=fs.unstrip_protocol(path), bytes=int(str(info.get("size") or 0)))
            )
    items += _stale_results(results, f"{root}/datasets", kept, cutoff)
    for output in staging_outputs:
        items += _abandoned_staging(output, cutoff)
    return Collection(items=items, kept_snapshots=len(kept))


def collect(collection: Collection) -> None:
    """Remove what `plan` found."""
    for item in collection.items:
        fs, path = url_to_fs(item.path)
        if fs.exists(path):
            fs.rm(path, recursive=True)


def _files(fs: AbstractFileSystem, folder: str) -> Iterator[tuple[str, dict[str, object]]]:
    if not fs.exists(folder):
        return
    yield from fs.find(folder, detail=True).items()


def _mtime(info: dict[str, object]) -> float:
    """Modification time as seconds since the epoch, from what the store reports (0 when it reports none)."""
    value = info.get("mtime") or info.get("LastModified") or info.get("last_modified") or 0
    return value.timestamp() if hasattr(value, "timestamp") else float(str(value))


def _size(info: dict[str, object]) -> int:
    return int(str(info.get("size") or 0))


def _stale_results(results: Path, snapshots: str, kept: set[str], cutoff: float) -> list[Garbage]:
    """Cached results that point at a snapshot of this datastore that is not kept (results of other stores stay)."""
    names = re.compile(re.escape(snapshots) + r"/([0-9a-f]{64})\.parquet")
    stale = []
    for path in sorted(results.glob("*")) if results.is_dir() else []:
        if not path.is_file() or path.stat().st_mtime >= cutoff:
            continue
        named = set(names.findall(_result_text(path)))  # a pickled DatasetRef holds its snapshot's URI
        if named - kept:
            stale.append(Garbage(kind="cached result", path=str(path), bytes=path.stat().st_size))
    return stale


def _result_text(path: Path) -> str:
    """A result record's payload as text: Prefect stores JSON whose `result` is base64 (of a pickle)."""
    raw = path.read_bytes()
    try:
        record = json.loads(raw)
        payload = base64.b64decode(record.get("result") or "") if isinstance(record, dict) else raw
    except (ValueError, TypeError):
        payload = raw
    return (raw + payload).decode("latin-1")


def _abandoned_staging(output: str, cutoff: float) -> list[Garbage]:
    """Staging folders of scoring runs under `output` with nothing written since `cutoff`."""
    fs, root = url_to_fs(output)
    staging = child(root, STAGING)
    abandoned = []
    for folder in fs.ls(staging, detail=False) if fs.exists(staging) else []:
        files = dict(_files(fs, folder))
        newest = max((_mtime(info) for info in files.values()), default=_mtime(fs.info(folder)))
        if newest < cutoff:
            size = sum(_size(info) for info in files.values())
            abandoned.append(Garbage(kind="scoring staging", path=fs.unstrip_protocol(folder), bytes=size))
    return abandoned
