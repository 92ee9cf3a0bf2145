"""Cache keys and retry rules shared by every task wrapper.

Keys are built from what a task's result depends on: its inputs (small references whose
content hashes stand for the data), the source of the module that does the work (so editing
a task's code, helpers included, invalidates only that task), and for ingestion the
fingerprint of the file it reads (so a changed byte invalidates everything downstream).
"""

import hashlib
import inspect
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from fsspec.core import url_to_fs
from prefect import Task, task
from prefect.cache_policies import INPUTS, CachePolicy
from prefect.context import TaskRunContext
from prefect.tasks import exponential_backoff
from prefect.utilities.hashing import hash_objects

from mlpipe.errors import MlpipeError

P = ParamSpec("P")
R = TypeVar("R")


@dataclass
class ModuleSource(CachePolicy):
    """Hash of the source file of the module that defines the task's function."""

    def compute_key(
        self,
        task_ctx: TaskRunContext,
        inputs: dict[str, Any],
        flow_parameters: dict[str, Any],
        **kwargs: Any,
    ) -> str | None:
        module = inspect.getmodule(task_ctx.task.fn)
        if module is None or module.__file__ is None:
            return None
        return hashlib.sha256(Path(module.__file__).read_bytes()).hexdigest()


@dataclass(kw_only=True)
class SourceFingerprint(CachePolicy):
    """Size, modification time and checksum (where the store has one) of the file in `parameter`."""

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
            info = fs.info(path)
        except Exception:  # noqa: BLE001 - unreadable sources are reported by the task itself
            return None
        fields = ("size", "mtime", "LastModified", "ETag", "etag", "md5", "crc32c", "last_modified")
        return hash_objects({name: str(info.get(name)) for name in fields})


CACHED = INPUTS + ModuleSource()
"""The policy for deterministic tasks: same inputs, same code, same result."""

RETRIES = 3
"""How many times a transient failure is retried (with exponential backoff)."""


def pipeline_task(fn: Callable[P, R], cache_policy: CachePolicy = CACHED) -> Task[P, R]:
    """The `@task` wrapper of a pipeline step: caching (`NO_CACHE` for steps that read live state,
    such as the current champion) and retries with exponential backoff for transient failures only."""
    return task(
        name=fn.__name__.replace("_", "-"),
        cache_policy=cache_policy,
        retries=RETRIES,
        retry_delay_seconds=exponential_backoff(backoff_factor=1),
        retry_condition_fn=retry_transient,
    )(fn)


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
