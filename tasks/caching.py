"""Cache keys and retry rules shared by every task wrapper.

Keys are built from what a task's result depends on: its inputs (small references whose
content hashes stand for the data), the source of the module that does the work and of every
project module it uses (so editing a task, or a helper it calls, invalidates that task and
no other), the versions of the libraries that shape results (an upgrade recomputes), and for
ingestion the fingerprint of the file it reads (so a changed byte invalidates everything
downstream). The workspace's identity reaches every key through the resolved `Datastore`.
A hit is served only while what it points at (snapshots, MLflow runs) still exists.
"""

import hashlib
import inspect
import logging
import sys
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib.metadata import version
from pathlib import Path
from types import ModuleType
from typing import Any, ParamSpec, Protocol, TypeVar, runtime_checkable

from fsspec.core import url_to_fs
from prefect import Task, task
from prefect.cache_policies import INPUTS, NO_CACHE, CachePolicy
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff
from prefect.utilities.hashing import hash_objects
from pydantic import BaseModel

from mlpipe.errors import MlpipeError
from mlpipe.tasks.storage import holds_files, source_info

P = ParamSpec("P")
R = TypeVar("R")


PROJECT_PACKAGE = "mlpipe"
"""Project code is every module under this import name; a user's own `tasks` or `flows` is not."""


@dataclass
class ModuleSource(CachePolicy):
    """Hash of the module that defines the task's function and of the project modules it uses, as they were loaded."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        module = inspect.getmodule(task_ctx.task.fn)
        if module is None:
            return None
        digest = hashlib.sha256()
        for used in sorted(project_modules(module), key=lambda m: m.__name__):
            digest.update(used.__name__.encode())
            digest.update(loaded_source(used).encode())
        return digest.hexdigest()


_LOADED_SOURCE: dict[str, str] = {}
"""Module name → hash of its source as this process loaded it (a file edited since runs old code here)."""


def loaded_source(module: ModuleType) -> str:
    """The hash of `module`'s source when this process first looked, which is when it was imported.

    A task module is hashed as its definition ends (`pipeline_task`), its helpers then too, having
    been imported just before. Reading the file at key time instead would key a result made by
    the old code with an edit this process never ran, and serve it to the processes that do.
    """
    if module.__name__ not in _LOADED_SOURCE:
        _LOADED_SOURCE[module.__name__] = _source_hash(module)
    return _LOADED_SOURCE[module.__name__]


def _remember_loaded(module: ModuleType | None) -> None:
    """Hash a task module as it finishes loading (again after a re-import), and the helpers it uses."""
    if module is None or module.__file__ is None:
        return
    _LOADED_SOURCE[module.__name__] = _source_hash(module)
    for used in project_modules(module):
        loaded_source(used)


def _source_hash(module: ModuleType) -> str:
    """SHA-256 of the module's file, read through its loader (so a zipped or installed package works too)."""
    path = module.__file__ or ""
    get_data = getattr(getattr(module, "__loader__", None), "get_data", None)
    content = get_data(path) if get_data is not None else Path(path).read_bytes()
    return hashlib.sha256(content).hexdigest()


def project_modules(module: ModuleType) -> set[ModuleType]:
    """`module` and, transitively, every project module whose names it imports."""
    found: set[ModuleType] = set()
    pending = [module]
    while pending:
        current = pending.pop()
        if current in found or current.__file__ is None:
            continue
        found.add(current)
        for value in vars(current).values():
            used = value if isinstance(value, ModuleType) else sys.modules.get(getattr(value, "__module__", "") or "")
            if used is not None and used.__name__.partition(".")[0] == PROJECT_PACKAGE:
                pending.append(used)
    return found


CHANGE_MARKERS = (
    "mtime", "created", "ino",  # local: modification time, change time (st_ctime: set by the kernel only), inode
    "ETag", "VersionId", "LastModified",  # s3
    "generation", "md5Hash", "crc32c", "etag", "updated",  # gcs
    "version_id", "last_modified",  # azure (etag above)
    "Content-MD5", "Digest", "Last-Modified",  # http (ETag above)
    "md5",
)  # fmt: skip
"""Fields of `fs.info` that change when a file's content does; the README lists them per store."""


@dataclass(kw_only=True)
class SourceFingerprint(CachePolicy):
    """Size, times and checksum or version id (where the store has one) of the file in `parameter`, or of every
    file in the folder or glob it names (a file added, removed or changed there is a new source).

    A local file is known by its size, modification time, change time and inode: the change time
    moves on every write and cannot be set back (`touch -d`, `cp -p` and restores set only the
    modification time), and a stat costs nothing, where hashing the content would read the whole
    file once more on every run.
    """

    parameter: str = "source"

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        try:
            fs, path = url_to_fs(str(inputs[self.parameter]))
            info = source_info(fs, path)
            if holds_files(info):  # every file in it
                found = fs.glob(path, detail=True) if info is None else fs.find(path, detail=True)
                files = [(name, info) for name, info in sorted(found.items()) if info.get("type") != "directory"]
            else:
                files = [(path, info or {})]  # nothing there: no change marker, never served from cache
        except Exception:  # noqa: BLE001 - an unreadable source is reported by the task itself
            files = []
        keys = [_file_key(name, info) for name, info in files]
        if not keys or None in keys:  # nothing tells a changed file apart: never serve it from cache
            return uuid.uuid4().hex
        return hash_objects(keys)


def _file_key(name: str, info: dict[str, Any]) -> dict[str, str] | None:
    markers = {marker: str(info[marker]) for marker in CHANGE_MARKERS if info.get(marker) is not None}
    return {"name": name, "size": str(info.get("size")), **markers} if markers else None


RESULT_LIBRARIES = (
    *("numpy", "pandas", "pyarrow", "scikit-learn", "xgboost", "great-expectations", "mlflow"),
    *("fairlearn", "diffprivlib"),
)
"""Libraries whose version can change what a step produces (a model, a split, a validation verdict)."""


@lru_cache(maxsize=1)
def result_libraries() -> dict[str, str]:
    """The installed version of each of `RESULT_LIBRARIES` in this process."""
    return {name: version(name) for name in RESULT_LIBRARIES}


@dataclass
class LibraryVersions(CachePolicy):
    """The versions of the libraries that shape results: an upgrade recomputes instead of serving old results."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        return hash_objects(result_libraries())


@runtime_checkable
class HasOutputs(Protocol):
    """A result that points at something stored elsewhere (a snapshot, an MLflow run), which can disappear."""

    def outputs_present(self, inputs: Mapping[str, Any]) -> bool:
        """Whether what the result points at still exists (`inputs`: the task's, e.g. its datastore)."""
        ...


def outputs_present(result: Any, inputs: Mapping[str, Any]) -> bool:
    """Whether everything `result` points at, at any depth (models, lists, mappings), still exists."""
    if isinstance(result, HasOutputs) and not result.outputs_present(inputs):
        return False
    if isinstance(result, BaseModel):
        return all(outputs_present(getattr(result, field), inputs) for field in type(result).model_fields)
    if isinstance(result, (list, tuple)):
        return all(outputs_present(item, inputs) for item in result)
    if isinstance(result, Mapping):
        return all(outputs_present(item, inputs) for item in result.values())
    return True


GENERATIONS = 20
"""How many times one task's outputs may vanish and be recomputed before its results stop being cached."""


@dataclass(kw_only=True)
class PresentOutputs(CachePolicy):
    """`policy`'s key, unless the result cached under it points at outputs that are gone: then a miss.

    Prefect serves a record whatever became of the files and runs it names. Here a record whose
    snapshot was deleted, or whose MLflow run was deleted, moves the key on by one generation,
    so the task runs again and its new result is cached under the next key (which later runs
    find, after checking it the same way).
    """

    policy: CachePolicy

    def __post_init__(self) -> None:
        self.key_storage = self.policy.key_storage
        self.isolation_level = self.policy.isolation_level
        self.lock_manager = self.policy.lock_manager

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        key = self.policy.compute_key(task_ctx, inputs, flow_parameters, **kwargs)
        if key is None:
            return None
        store = task_ctx.result_store
        for generation in range(GENERATIONS):
            candidate = key if generation == 0 else hash_objects(key, generation)
            if candidate is None or not store.exists(candidate):
                return candidate
            if outputs_present(store.read(candidate).result, inputs):
                return candidate
        return uuid.uuid4().hex


CACHED = INPUTS + ModuleSource() + LibraryVersions()
"""The policy for deterministic tasks: same inputs, same code, same libraries, same result."""

RETRIES = 3
"""How many times a transient failure is retried (with exponential backoff)."""


def pipeline_task(fn: Callable[P, R], cache_policy: CachePolicy = CACHED) -> Task[P, R]:
    """The `@task` wrapper of a pipeline step: caching (`NO_CACHE` for steps that read live state,
    such as the current champion; a cached result whose outputs are gone is a miss) and retries
    with exponential backoff for transient failures only."""
    wrapped = task(
        name=fn.__name__.replace("_", "-"),
        cache_policy=cache_policy if cache_policy is NO_CACHE else PresentOutputs(policy=cache_policy),
        retries=RETRIES,
        retry_delay_seconds=exponential_backoff(backoff_factor=1),
        retry_condition_fn=retry_transient,
    )(fn)
    _remember_loaded(inspect.getmodule(fn))
    return wrapped


def run_logger(module: str) -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The task run's logger (its lines show in the Prefect UI), or `module`'s outside a run."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(module)


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Retry I/O and tracking-server hiccups; never retry bad input, which fails the same way again."""
    try:
        state.result()
    except MlpipeError:
        return False
    except (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError):
        return False
    except (ConnectionError, TimeoutError, OSError):
        return True
    except Exception as error:  # noqa: BLE001 - classified below
        return _is_transient_http_error(error) or _is_transient_tracking_error(error)
    return False


def _is_transient_http_error(error: Exception) -> bool:
    """A server-side HTTP status (5xx, 429) from an fsspec HTTP/object-store backend."""
    status = getattr(error, "status", None) or getattr(error, "status_code", None)
    return isinstance(status, int) and (status >= 500 or status == 429)


def _is_transient_tracking_error(error: Exception) -> bool:
    from mlflow.exceptions import MlflowException

    if not isinstance(error, MlflowException):
        return False
    transient_codes = {"TEMPORARILY_UNAVAILABLE", "INTERNAL_ERROR", "REQUEST_LIMIT_EXCEEDED"}
    return error.error_code in transient_codes or "database is locked" in str(error)
