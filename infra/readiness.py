"""Whether a started component is ready: one quick attempt each, repeated by the caller until a deadline."""

import base64
import json
import socket
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from mlpipe.workspace import accepts_connections

TIMEOUT = 2.0


class Check(Protocol):
    def ready(self) -> bool: ...


@dataclass(frozen=True)
class HttpAnswers:
    """An HTTP endpoint answers 2xx (health endpoints need no credentials, on every server here)."""

    url: str

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(self.url, timeout=TIMEOUT) as response:
                return 200 <= response.status < 300
        except (OSError, ValueError):
            return False


@dataclass(frozen=True)
class TcpAccepts:
    address: str

    def ready(self) -> bool:
        return accepts_connections(self.address)


@dataclass(frozen=True)
class UnixSocketAccepts:
    path: str

    def ready(self) -> bool:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(TIMEOUT)
            try:
                probe.connect(self.path)
            except OSError:
                return False
        return True


@dataclass(frozen=True)
class DaskWorkersConnected:
    """The scheduler counts at least `workers` workers (its `/json/counts.json`)."""

    http_url: str
    workers: int

    def ready(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.http_url}/json/counts.json", timeout=TIMEOUT) as response:
                return int(json.load(response)["workers"]) >= self.workers
        except (OSError, ValueError, KeyError):
            return False


@dataclass(frozen=True)
class PrefectWorkerPolling:
    """A worker of `pool` has reported to the Prefect API (so deployments' runs get picked up)."""

    api_url: str
    pool: str
    auth_string: str | None = None

    def ready(self) -> bool:
        request = urllib.request.Request(
            f"{self.api_url}/work_pools/{self.pool}/workers/filter", data=b"{}", method="POST"
        )
        request.add_header("Content-Type", "application/json")
        if self.auth_string:
            request.add_header("Authorization", f"Basic {base64.b64encode(self.auth_string.encode()).decode()}")
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
                return bool(json.load(response))
        except (OSError, ValueError):
            return False
