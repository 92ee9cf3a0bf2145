"""`mlpipe worker` stops within 10 s of SIGTERM, with or without its server, and leaves no flow-run process behind."""

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from prefect.client.orchestration import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings
from prefect.types.entrypoint import EntrypointType

from mlpipe.deployments.deploy import ensure_work_pool
from tests.e2e.sleeper import sleeper
from tests.pipeline import wait_for
from tests.servers import BIN, prefect_server

pytestmark = pytest.mark.e2e

ROOT = Path(__file__).parents[2]  # flow-run processes import tests.e2e.sleeper from here
POOL = "mlpipe-stop"
STOP_LIMIT = 10.0


@pytest.fixture
def server(prefect_server_api: str) -> str:
    """The session's real `prefect server`; the test that stops its server starts one of its own."""
    return prefect_server_api


@contextmanager
def worker_on(api: str, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`mlpipe worker` serving POOL on `api`, started once it polls; killed at the end if a test left it."""
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_WORKER_QUERY_SECONDS": "1", "PYTHONPATH": str(ROOT)}
    command = [str(BIN / "mlpipe"), "worker", "--pool", POOL]
    worker = subprocess.Popen(command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "started!" in log.read_text() or worker.poll() is not None, 120, "the worker to start")
        assert worker.poll() is None, log.read_text()[-3000:]
        yield worker
    finally:
        for process in [*processes_of(worker), psutil.Process(worker.pid)] if worker.poll() is None else []:
            process.kill()
        worker.wait(timeout=30)


def processes_of(worker: subprocess.Popen[bytes]) -> list[psutil.Process]:
    try:
        return psutil.Process(worker.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def start_sleeper(api: str, folder: Path) -> tuple[object, list[psutil.Process]]:
    """A run of the sleeper deployment, once its process (and its child) are running: its id and processes."""
    with temporary_settings({PREFECT_API_URL: api}):
        ensure_work_pool(POOL)
        deployment = sleeper.to_deployment(
            name="sleeper", work_pool_name=POOL, entrypoint_type=EntrypointType.MODULE_PATH
        )
        deployment_id = deployment.apply(work_pool_name=POOL)
        with get_client(sync_client=True) as client:
            run = client.create_flow_run_from_deployment(
                deployment_id, parameters={"folder": str(folder), "seconds": 600}
            )
    pids = folder / "pids"
    wait_for(pids.exists, 180, "the flow run to start")
    time.sleep(0.2)
    return run.id, [psutil.Process(int(pid)) for pid in pids.read_text().split()]


def stop(worker: subprocess.Popen[bytes]) -> float:
    """SIGTERM the worker; the seconds it took to exit (STOP_LIMIT * 3 if it did not)."""
    start = time.monotonic()
    worker.send_signal(signal.SIGTERM)
    try:
        worker.wait(timeout=STOP_LIMIT * 3)
    except subprocess.TimeoutExpired:
        return STOP_LIMIT * 3
    return time.monotonic() - start


def left_behind(processes: list[psutil.Process]) -> list[str]:
    return [" ".join(p.cmdline()) for p in processes if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def state_of(api: str, run_id: object) -> str:
    with temporary_settings({PREFECT_API_URL: api}), get_client(sync_client=True) as client:
        return str(client.read_flow_run(run_id).state_name)  # type: ignore[arg-type]


def test_an_idle_worker_stops_within_10_s_of_sigterm(server: str, tmp_path: Path):
    log = tmp_path / "worker.log"
    with worker_on(server, log) as worker:
        started = processes_of(worker)
        seconds = stop(worker)
    assert seconds < STOP_LIMIT, log.read_text()[-3000:]
    assert worker.returncode == 0
    assert left_behind(started) == []


def test_a_running_flow_is_marked_crashed_and_its_processes_are_gone(server: str, tmp_path: Path):
    log = tmp_path / "worker.log"
    with worker_on(server, log) as worker:
        run_id, flow_processes = start_sleeper(server, tmp_path)
        started = processes_of(worker)
        seconds = stop(worker)
    assert seconds < STOP_LIMIT, log.read_text()[-3000:]
    assert left_behind(started + flow_processes) == []
    assert state_of(server, run_id) == "Crashed"


def test_worker_and_server_stopped_together_stop_within_10_s_leaving_nothing(tmp_path: Path):
    log = tmp_path / "worker.log"
    with prefect_server(tmp_path) as (api, server), worker_on(api, log) as worker:
        _, flow_processes = start_sleeper(api, tmp_path)
        started = processes_of(worker)
        server.send_signal(signal.SIGTERM)
        seconds = stop(worker)
    assert seconds < STOP_LIMIT, log.read_text()[-3000:]
    assert left_behind(started + flow_processes) == []
