"""One TLS context per CA file for Prefect's API clients, instead of a new one for every client.

Prefect's client builds a verified TLS context for each API client it makes (reading and parsing
every certificate of the CA bundle: about 15 ms here), whatever the API's scheme, and a task run
on a Dask worker makes two clients: a good part of each step's and each sweep trial's start-up.
A verified context is never changed after it is built, so one per CA file (rebuilt when the file
changes) serves every client of the process. Prefect's insecure context, which it changes after
building, is still built each time.
"""

import os
import ssl
import threading
import types
from typing import Any


def share_tls_contexts() -> None:
    """Make Prefect's API clients in this process share their verified TLS contexts (idempotent)."""
    import prefect.client.orchestration as orchestration

    if not isinstance(orchestration.ssl, _SharedTlsContexts):
        orchestration.ssl = _SharedTlsContexts()


class _SharedTlsContexts(types.ModuleType):
    """The `ssl` module as Prefect's client sees it: `create_default_context(cafile=…)` built once per file."""

    def __init__(self) -> None:
        super().__init__("ssl")
        self._built: dict[str, tuple[tuple[int, int], ssl.SSLContext]] = {}
        """Per CA file: its modification time and size when the context was built, and the context."""
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(ssl, name)

    def create_default_context(
        self,
        purpose: ssl.Purpose = ssl.Purpose.SERVER_AUTH,
        *,
        cafile: str | None = None,
        capath: str | None = None,
        cadata: str | bytes | None = None,
    ) -> ssl.SSLContext:
        if cafile is None or capath is not None or cadata is not None or purpose != ssl.Purpose.SERVER_AUTH:
            return ssl.create_default_context(purpose, cafile=cafile, capath=capath, cadata=cadata)
        status = os.stat(cafile)
        stamp = (status.st_mtime_ns, status.st_size)
        with self._lock:
            if cafile not in self._built or self._built[cafile][0] != stamp:
                self._built[cafile] = (stamp, ssl.create_default_context(purpose, cafile=cafile))
            return self._built[cafile][1]
