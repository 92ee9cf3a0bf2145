"""Server processes a test starts as a user would: on 127.0.0.1, on a free port, stopped afterwards."""

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from mlpipe.workspace import free_port

BIN = Path(sys.executable).parent


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


POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
"""The test PostgreSQL server (trust auth); `MLPIPE_TEST_POSTGRES_URL` overrides it."""


@contextmanager
def postgres_databases(*purposes: str) -> Iterator[dict[str, str]]:
    """A fresh database per purpose on the test PostgreSQL server, dropped afterwards: purpose → `postgresql://` URL.

    Skips the test, naming the server and the variable, when no PostgreSQL answers there.
    """
    import psycopg2
    import pytest

    base = urlsplit(os.environ.get("MLPIPE_TEST_POSTGRES_URL", POSTGRES_URL))
    prefix = (base.path.strip("/") or "test").replace("-", "_")
    try:
        admin = psycopg2.connect(base._replace(path="/postgres").geturl(), connect_timeout=5)
    except psycopg2.OperationalError as error:
        pytest.skip(f"no PostgreSQL at {base.hostname}:{base.port} (set MLPIPE_TEST_POSTGRES_URL): {error}")
    admin.autocommit = True
    names = {purpose: f"{prefix}_{purpose}_{uuid.uuid4().hex[:8]}" for purpose in purposes}
    try:
        with admin.cursor() as cursor:
            for name in names.values():
                cursor.execute(f'CREATE DATABASE "{name}"')
        yield {purpose: base._replace(path=f"/{name}").geturl() for purpose, name in names.items()}
    finally:
        with admin.cursor() as cursor:
            for name in names.values():
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


@contextmanager
def prefect_server(home: Path, database_url: str | None = None) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`prefect server start`: its API URL and process; its database under `home`, or at `database_url` (PostgreSQL).

    Its UI (at the URL without `/api`) is told where the API is: left alone it looks on port 4200.
    """
    port = free_port()
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    env["PREFECT_UI_API_URL"] = url
    env.pop("PREFECT_API_URL", None)
    if database_url:
        env["PREFECT_API_DATABASE_CONNECTION_URL"] = database_url.replace("postgresql://", "postgresql+asyncpg://", 1)
    command = [str(BIN / "prefect"), "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"{url}/health", home / "server.log", env, seconds=300) as server:
        yield url, server


def clear_prefect_server(api: str) -> None:
    """Delete every automation, deployment and flow run on the server at `api`.

    A module on the session's shared server then starts from none of another module's, whatever ran
    before: no list in the UI longer than its own, no run left waiting for a worker on a shared pool.
    """
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL, temporary_settings

    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        for automation in client.read_automations():
            client.delete_automation(automation.id)
        while deployments := client.read_deployments(limit=200):
            for deployment in deployments:
                client.delete_deployment(deployment.id)
        while flow_runs := client.read_flow_runs(limit=200):
            for flow_run in flow_runs:
                client.delete_flow_run(flow_run.id)


@contextmanager
def mlpipe_worker(folder: Path, env: dict[str, str], pool: str = "mlpipe") -> Iterator[subprocess.Popen[bytes]]:
    """`mlpipe worker` on `pool`, polling every second, in `folder` (output in `folder/worker.log`); stopped at the end.

    `env` is the whole environment: it names the server (`PREFECT_API_URL`) and what the flow runs need.
    """
    command = [str(BIN / "mlpipe"), "worker", "--pool", pool]
    with (folder / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            command, env={**env, "PREFECT_WORKER_QUERY_SECONDS": "1"}, cwd=folder, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        yield worker
    finally:
        worker.terminate()
        worker.wait(timeout=60)


@contextmanager
def together(*managers: AbstractContextManager[Any]) -> Iterator[list[Any]]:
    """Enter `managers` at once, each in a thread of its own, and exit them at once: what each yields, in order.

    Servers that wait on their own start-up (imports, database migrations) then start in the time of
    the slowest rather than of all together. If one fails to start, those that started are stopped.
    """
    with ThreadPoolExecutor(len(managers)) as pool:
        starts = [pool.submit(manager.__enter__) for manager in managers]
        started = [manager for manager, start in zip(managers, starts, strict=True) if start.exception() is None]
        try:
            yield [start.result() for start in starts]  # the first failure to start raises here
        finally:
            stops = [pool.submit(manager.__exit__, None, None, None) for manager in started]
            for stop in stops:
                stop.result()


@contextmanager
def mlflow_server(folder: Path, proxy_artifacts: bool = True, database_url: str | None = None) -> Iterator[str]:
    """An `mlflow server` on SQLite (or the PostgreSQL `database_url`); yields its URL (`http://127.0.0.1:PORT`).

    With `proxy_artifacts` the server stores artifacts it receives; without, clients write them to
    its folder directly (one request fewer per artifact, for tests that count requests).
    """
    folder.mkdir(parents=True, exist_ok=True)
    port = free_port()
    command = [str(BIN / "mlflow"), "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    command += ["--backend-store-uri", database_url or f"sqlite:///{folder / 'mlflow.db'}"]
    if proxy_artifacts:
        command += ["--artifacts-destination", str(folder / "art")]
    else:
        command += ["--default-artifact-root", (folder / "artifacts").as_uri(), "--no-serve-artifacts"]
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    url = f"http://127.0.0.1:{port}"
    # Creating the tables (dozens of migrations on PostgreSQL) can take minutes on a busy machine.
    with serving(command, f"{url}/health", folder / "mlflow-server.log", env, seconds=300):
        yield url


@contextmanager
def dask_scheduler(folder: Path) -> Iterator[str]:
    """`dask scheduler` on 127.0.0.1 (no dashboard); yields its address (`tcp://127.0.0.1:PORT`)."""
    port = free_port()
    command = [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    with serving(command, f"tcp://127.0.0.1:{port}", folder / "scheduler.log", dict(os.environ), seconds=60):
        yield f"tcp://127.0.0.1:{port}"


@contextmanager
def dask_worker(
    scheduler: str, name: str, folder: Path, env: dict[str, str], nthreads: int = 1, resources: str | None = None
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A `dask worker` process (no nanny: killing it kills the worker) on 127.0.0.1; yields its address and process.

    `env` is added to this process's environment (a worker needs the flow's `PREFECT_API_URL`).
    """
    port = free_port()
    command = [str(BIN / "dask"), "worker", scheduler, "--name", name, "--nthreads", str(nthreads), "--no-nanny"]
    command += ["--host", "127.0.0.1", "--worker-port", str(port), "--no-dashboard"]
    command += ["--resources", resources] if resources else []
    log = folder / f"worker-{name}.log"
    with serving(command, f"tcp://127.0.0.1:{port}", log, {**os.environ, **env}, seconds=60) as worker:
        yield f"tcp://127.0.0.1:{port}", worker


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
