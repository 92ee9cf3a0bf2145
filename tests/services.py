"""Real servers that tests start on 127.0.0.1 (free ports) and stop: Redis with a password, an MLflow server."""

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def redis_server(password: str, folder: Path) -> Iterator[str]:
    """A Redis server that requires `password`; yields its URL without it (`redis://127.0.0.1:PORT/0`)."""
    executable = shutil.which("redis-server")
    if executable is None:
        import pytest

        pytest.skip("redis-server is not installed")
    port = free_port()
    args = ["--port", str(port), "--bind", "127.0.0.1", "--requirepass", password, "--save", "", "--appendonly", "no"]
    process = subprocess.Popen([executable, *args, "--dir", str(folder)], stdout=subprocess.DEVNULL)
    try:
        _wait(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close(), what="redis-server")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)


@contextmanager
def mlflow_server(folder: Path) -> Iterator[str]:
    """An `mlflow server` on SQLite with its artifacts proxied; yields its URL (`http://127.0.0.1:PORT`)."""
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    args = ["server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    args += ["--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}", "--artifacts-destination", str(folder / "art")]
    log = (folder / "mlflow-server.log").open("w")
    process = subprocess.Popen([str(BIN / "mlflow"), *args], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: httpx.get(f"{url}/health", timeout=2).raise_for_status(), what="mlflow server", seconds=90)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=20)
        log.close()


def _wait(probe: Callable[[], object], what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while True:
        try:
            probe()
            return
        except Exception:  # noqa: BLE001 - not up yet
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not start within {seconds:.0f} s") from None
            time.sleep(0.3)
