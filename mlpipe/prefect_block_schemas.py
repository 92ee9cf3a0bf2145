"""A Prefect block class's JSON schema built once per process.

For every task a flow submits to Dask, Prefect serializes the flow run's context with its
parameters, secrets included, and for every field of every block among them it asks the
block's class for its JSON schema, to find the fields that hold secrets. Pydantic builds that
schema anew each time: a `WorkspaceConfig` (eight blocks) took ≈ 65 ms to serialize so, against
0.7 ms without the secrets, in the flow's process, between one step and the next. A class's
schema does not change while the process runs, so it is built once per class and arguments, and
every caller gets a copy of its own (Prefect edits the schemas it is given).
"""

import copy
import threading
from collections.abc import Callable
from typing import Any


def build_block_schemas_once() -> None:
    """Make every block class in this process build its JSON schema once (idempotent)."""
    from prefect.blocks.core import Block

    build = Block.__dict__["model_json_schema"].__func__
    if not getattr(build, "built_once", False):
        Block.model_json_schema = classmethod(_built_once(build))  # type: ignore[method-assign, assignment]


def _built_once(build: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    built: dict[Any, dict[str, Any]] = {}
    lock = threading.Lock()

    def model_json_schema(cls: type, *args: Any, **kwargs: Any) -> dict[str, Any]:
        key = (cls, args, tuple(sorted(kwargs.items())))
        with lock:
            schema = built.get(key)
        if schema is None:
            schema = build(cls, *args, **kwargs)
            with lock:
                built[key] = schema
        return copy.deepcopy(schema)

    model_json_schema.built_once = True  # type: ignore[attr-defined]
    model_json_schema.__wrapped__ = build  # type: ignore[attr-defined]
    return model_json_schema
