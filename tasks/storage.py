"""Atomic writes: every file mlpipe publishes is written under a hidden temporary name and renamed.

Readers (Parquet dataset readers, `fs.glob`, the next run) either see a whole file or none:
a crash, a full disk or a killed worker leaves at most a hidden `.….tmp` file, which the
writer removes when it can and which nothing ever reads.
"""

import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from fsspec import AbstractFileSystem
from fsspec.core import url_to_fs
from fsspec.implementations.local import LocalFileSystem


@dataclass
class Staged:
    """A temporary file beside its target; set `keep = False` to discard it instead of publishing."""

    fs: AbstractFileSystem
    path: str
    keep: bool = True


def child(root: str, *parts: str) -> str:
    """`root/part/…`, refusing parts that could lead outside `root` (`..`, `.`, an empty or absolute segment).

    Names that come from users (a partition, a model) end up in paths; this is the one place a
    path under a root is made from them, so none can climb out of it.

    Raises:
        ValueError: a part would leave `root`.
    """
    segments = [segment for part in parts for segment in part.split("/")]
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError(f"{'/'.join(parts)!r} is not a path inside {root}")
    return "/".join([root.rstrip("/"), *parts])


def is_pattern(fs: AbstractFileSystem, path: str) -> bool:
    """Whether `path` is a glob (`*`, `?`, `[`); never over HTTP, where `?` starts a query (a presigned URL)."""
    return "http" not in fs.protocol and any(char in path for char in "*?[")


def source_info(fs: AbstractFileSystem, path: str) -> dict[str, Any] | None:
    """What the store says of a source, in one request (an HTTP store counts each): None for a glob, {} for nothing
    there."""
    if is_pattern(fs, path):
        return None
    try:
        return dict(fs.info(path))
    except FileNotFoundError:
        return {}


def holds_files(info: dict[str, Any] | None) -> bool:
    """Whether a source (as `source_info` describes it) is a glob or a folder: the files in it, not the path itself."""
    return info is None or info.get("type") == "directory"


def hidden_temporary(path: str) -> str:
    """A temporary name beside `path` that dataset readers skip (a leading dot), unique per attempt."""
    folder, name = path.rsplit("/", 1) if "/" in path else ("", path)
    hidden = f".{name}.{uuid.uuid4().hex}.tmp"
    return f"{folder}/{hidden}" if folder else hidden


@contextmanager
def atomic_write(url: str, fs: AbstractFileSystem | None = None) -> Iterator[Staged]:
    """Write to the yielded temporary path; it is renamed onto `url` only if the block succeeds.

    On any error (or with `keep = False`) the temporary file is removed and `url` is untouched.
    `fs` is the filesystem `url` is a path in, when it needs options (credentials) of its own.
    """
    fs, path = (fs, url) if fs is not None else url_to_fs(url)
    staged = Staged(fs=fs, path=hidden_temporary(path))
    try:
        yield staged
        if staged.keep:
            fs.mv(staged.path, path)
    finally:
        if fs.exists(staged.path):
            fs.rm(staged.path)


def write_bytes(url: str, content: bytes, fs: AbstractFileSystem | None = None) -> None:
    """Write `content` to `url` atomically."""
    with atomic_write(url, fs) as staged:
        staged.fs.pipe_file(staged.path, content)


def write_parquet(table: pa.Table, url: str, fs: AbstractFileSystem | None = None) -> None:
    """Write a Parquet file atomically (`fs`: the filesystem `url` is a path in, as for `atomic_write`)."""
    with atomic_write(url, fs) as staged:
        pq.write_table(table, staged.path, filesystem=staged.fs)


def write_json(url: str, content: dict[str, Any]) -> None:
    """Write a JSON document atomically."""
    with atomic_write(url) as staged, staged.fs.open(staged.path, "w") as handle:
        json.dump(content, handle, indent=2, default=str)


def create_exclusive(url: str, content: bytes) -> None:
    """Create `url` holding `content`, failing if it exists: of two writers racing for one name, exactly one wins.

    The primitive a lease is built on (mode `xb`: `O_EXCL` locally, a conditional put on stores that offer one).

    Raises:
        FileExistsError: `url` exists already.
    """
    fs, path = url_to_fs(url)
    fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        # Written whole under a hidden name, then linked (which fails if the name exists): a reader
        # racing the winner never finds the file created but still empty.
        staged = hidden_temporary(path)
        with open(staged, "wb") as handle:
            handle.write(content)
        try:
            os.link(staged, path)
        finally:
            os.unlink(staged)
        return
    with fs.open(path, "xb") as handle:
        handle.write(content)
