"""Prefect's settings sent to a flow's Dask tasks once per flow run, and rebuilt once per worker process.

For every task a flow submits to Dask, prefect-dask serializes the flow's settings context
(≈ 17 ms here) and the worker validates it into a settings object again (≈ 27 ms): together
more than a cached step's own work, and paid on the critical path of every step and every sweep
trial. Within a flow run the settings are one object, so the flow process serializes each
settings context once, and each process builds each distinct set of settings once and shares
the object (Prefect never changes a settings object it has built; it makes a new one).
"""

import json
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any


def share_settings() -> None:
    """In this process: serialize each settings context once, and build each received one once (idempotent)."""
    from prefect.context import SettingsContext

    if not getattr(SettingsContext.serialize, "shared", False):
        SettingsContext.serialize = _serialized_once(SettingsContext.serialize)  # type: ignore[method-assign]
        SettingsContext.__init__ = _built_once(SettingsContext.__init__)  # type: ignore[method-assign]


def _serialized_once(serialize: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """The last context's serialization, reused while the same context object asks again."""
    last: list[Any] = [None, None, None]  # context, include_secrets, serialized
    lock = threading.Lock()

    def serialize_once(self: Any, include_secrets: bool = True) -> dict[str, Any]:
        with lock:
            if last[0] is self and last[1] == include_secrets:
                return dict(last[2])
        serialized = serialize(self, include_secrets=include_secrets)
        with lock:
            last[:] = [self, include_secrets, serialized]
        return dict(serialized)

    serialize_once.shared = True  # type: ignore[attr-defined]
    return serialize_once


KEPT = 32
"""Distinct settings a process keeps built, the most recently used: a long-lived worker (`mlpipe up`'s)
serves flows from a few folders and users, and would otherwise keep every set it was ever sent."""


def _built_once(init: Callable[..., None]) -> Callable[..., None]:
    """A settings context made from serialized settings gets the settings object built for them before."""
    built: OrderedDict[str, Any] = OrderedDict()
    lock = threading.Lock()

    def init_once(self: Any, **data: Any) -> None:
        received = data.get("settings")
        if isinstance(received, dict):
            key = json.dumps(received, sort_keys=True, default=str)
            with lock:
                settings = built.get(key)
                if settings is not None:
                    built.move_to_end(key)
            if settings is None:
                init(self, **data)
                with lock:
                    built[key] = self.settings
                    while len(built) > KEPT:
                        built.popitem(last=False)
                return
            data = {**data, "settings": settings}
        init(self, **data)

    return init_once
