"""Server processes a test starts as a user would: on 127.0.0.1, on a free port, stopped afterwards."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(
    command: list[str], health: str, log: Path, env: dict[str, str], seconds: float = 120
) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until the block ends, once `health` answers (an http URL, or `tcp://host:port` for a
    server that speaks no HTTP); its output goes to `log`, shown if it never answers."""
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                _probe(health)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError(log.read_text()[-3000:]) from None
                time.sleep(0.3)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=60)


def _probe(health: str) -> None:
    if health.startswith("tcp://"):
        host, port = health.removeprefix("tcp://").split(":")
        socket.create_connection((host, int(port)), timeout=1).close()
    else:
        urllib.request.urlopen(health, timeout=2)


@contextmanager
def prefect_server(home: Path) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`prefect server start` with its own database under `home`: its API URL and process.

    Its UI (at the URL without `/api`) is told where the API is: left alone it looks on port 4200.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env["PREFECT_UI_API_URL"] = url
    env.pop("PREFECT_API_URL", None)
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"{url}/health", home / "server.log", env) as server:
        yield url, server


@contextmanager
def mlflow_server(folder: Path, proxy_artifacts: bool = True) -> Iterator[str]:
    """An `mlflow server` on SQLite; yields its URL (`http://127.0.0.1:PORT`).

    With `proxy_artifacts` the server stores artifacts it receives; without, clients write them to
    its folder directly (one request fewer per artifact, for tests that count requests).
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}"]
    if proxy_artifacts:
        command += ["--artifacts-destination", str(folder / "art")]
    else:
        command += ["--default-artifact-root", (folder / "artifacts").as_uri(), "--no-serve-artifacts"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    url = f"http://127.0.0.1:{port}"
    with serving(command, f"{url}/health", folder / "mlflow-server.log", env):
        yield url


@contextmanager
def redis_server(password: str, folder: Path) -> Iterator[str]:
    """A Redis server that requires `password`; yields its URL without it (`redis://127.0.0.1:PORT/0`)."""
    executable = shutil.which("redis-server")
    if executable is None:
        import pytest

        pytest.skip("redis-server is not installed")
    port = free_port()
    command = [executable, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password]
    command += ["--save", "", "--appendonly", "no", "--dir", str(folder)]
    with serving(command, f"tcp://127.0.0.1:{port}", folder / "redis.log", dict(os.environ), seconds=20):
        yield f"redis://127.0.0.1:{port}/0"
