"""What `mlpipe up` would start, checked without starting it: GPU workers, loopback, credentials, ports."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from mlpipe.errors import ConfigError
from mlpipe.infra.auth import resolve_credentials
from mlpipe.infra.components import Component, Options, Ports, components, is_loopback
from mlpipe.infra.readiness import HttpAnswers
from mlpipe.infra.serving.settings import API_KEYS, READY_PATH
from mlpipe.processes import process_started
from mlpipe.runtime import use_running_servers
from mlpipe.workspace import ServerProcess, Servers, running_servers, servers_state_file

pytestmark = pytest.mark.unit
MLPIPE = str(Path(sys.executable).parent / "mlpipe")
PORTS = Ports(prefect=4200, mlflow=5000, dask=8786, dashboard=8787)


def _plan(tmp_path: Path, **options: object) -> dict[str, list[str]]:
    planned = components(Options(**options), PORTS, tmp_path, None, tmp_path)  # type: ignore[arg-type]
    return {component.name: component.command for component in planned}


def test_each_gpu_gets_a_worker_that_advertises_the_gpu_resource_and_sees_only_its_device(tmp_path: Path):
    planned = {c.name: c for c in components(Options(gpus=2), PORTS, tmp_path, None, tmp_path)}
    gpu_workers = [planned["dask-gpu-worker-0"], planned["dask-gpu-worker-1"]]
    for index, worker in enumerate(gpu_workers):
        arguments = " ".join(worker.command)
        assert "tcp://127.0.0.1:8786 --nworkers 1 --nthreads 1 --resources GPU=1" in arguments
        assert worker.environment["CUDA_VISIBLE_DEVICES"] == str(index)
        assert worker.environment["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"
    assert "--resources" not in planned["dask-workers"].command  # CPU workers never take GPU-annotated tasks


def test_with_dask_cuda_one_cuda_worker_serves_every_gpu(tmp_path: Path):
    plan = _plan(tmp_path, gpus=4, cuda_worker=True)
    assert not any(name.startswith("dask-gpu-worker-") for name in plan)
    assert plan["dask-gpu-workers"][1:6] == ["-m", "dask", "cuda", "worker", "tcp://127.0.0.1:8786"]
    assert "GPU=1" in plan["dask-gpu-workers"]


def test_no_gpu_no_gpu_worker(tmp_path: Path):
    assert set(_plan(tmp_path)) == {"prefect", "mlflow", "dask-scheduler", "dask-workers", "commands", "worker"}


def test_dask_stays_on_loopback_when_the_servers_listen_beyond_it(tmp_path: Path):
    plan = _plan(tmp_path, host="0.0.0.0")
    assert plan["prefect"][plan["prefect"].index("--host") + 1] == "0.0.0.0"
    assert plan["mlflow"][plan["mlflow"].index("--host") + 1] == "0.0.0.0"
    assert plan["dask-scheduler"][plan["dask-scheduler"].index("--host") + 1] == "127.0.0.1"
    assert plan["dask-workers"][plan["dask-workers"].index("--host") + 1] == "127.0.0.1"


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("10.1.2.3", False),
        ("myhost", False),
    ],
)
def test_loopback(host: str, loopback: bool):
    assert is_loopback(host) is loopback


def test_credentials_are_never_defaults(monkeypatch: pytest.MonkeyPatch):
    for name in ("PREFECT_API_AUTH_STRING", "PREFECT_SERVER_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", "password1234")
    with pytest.raises(ConfigError) as raised:
        resolve_credentials("listening on 0.0.0.0")
    message = str(raised.value)
    assert "listening on 0.0.0.0 requires authentication" in message
    assert "PREFECT_API_AUTH_STRING" in message and "MLFLOW_TRACKING_USERNAME" in message
    assert "well-known default" in message


def _mlpipe(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MLPIPE_HOME": str(home), **env}
    for name in ("PREFECT_API_AUTH_STRING", "MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLPIPE_API_KEYS"):
        environment.pop(name, None)
    return subprocess.run([MLPIPE, *args], env=environment, capture_output=True, text=True, timeout=120)


def test_beyond_loopback_without_credentials_nothing_starts(tmp_path: Path):
    result = _mlpipe("up", "--host", "0.0.0.0", "--prefect-port", "0", "--mlflow-port", "0", home=tmp_path)
    assert result.returncode == 1
    assert "listening on 0.0.0.0 (beyond loopback) requires authentication" in result.stderr
    assert not servers_state_file().exists() and not (tmp_path / "servers" / "workspace.json").exists()


def test_a_port_in_use_is_named_and_nothing_starts(tmp_path: Path):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = _mlpipe(
            "up",
            "--prefect-port",
            "0",
            "--mlflow-port",
            str(port),
            "--dask-port",
            "0",
            "--dashboard-port",
            "0",
            home=tmp_path,
        )
    assert result.returncode == 1
    assert f"port {port} on 127.0.0.1 (the MLflow server) is already in use" in result.stderr
    assert "--mlflow-port" in result.stderr
    assert not (tmp_path / "servers" / "workspace.json").exists()
    assert (
        _mlpipe("status", "--json", home=tmp_path).stdout
        and json.loads(_mlpipe("status", "--json", home=tmp_path).stdout)["running"] is False
    )


def _record(listening: socket.socket, pid: int, started: float | None = None) -> Servers:
    address = f"127.0.0.1:{listening.getsockname()[1]}"
    started = process_started(pid) if started is None else started
    process = ServerProcess(pid=pid, started=started, address=address, log="")
    servers = Servers(
        prefect_api_url=f"http://{address}/api",
        mlflow_tracking_uri=f"http://{address}",
        dask_scheduler_address=f"tcp://{address}",
        dask_dashboard_url=f"http://{address}/status",
        auth=False,
        processes={"prefect": process, "mlflow": process, "dask-scheduler": process},
    )
    servers_state_file().write_text(servers.to_json())
    return servers


@pytest.fixture
def listening(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path))
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path / "prefect"))  # no profile of the user's
    for name in ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "DASK_SCHEDULER_ADDRESS", "MLPIPE_SERVERS"):
        monkeypatch.setenv(name, "")  # recorded, so what the test sets is undone
        monkeypatch.delenv(name)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        yield server


def test_a_running_workspace_becomes_the_default_but_a_users_variable_wins(
    listening: socket.socket, monkeypatch: pytest.MonkeyPatch
):
    servers = _record(listening, os.getpid())
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mine.db")
    assert use_running_servers() == {
        "PREFECT_API_URL": servers.prefect_api_url,
        "DASK_SCHEDULER_ADDRESS": servers.dask_scheduler_address,
    }
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:///mine.db"


def test_another_prefect_api_keeps_the_workspaces_dask_workers_out(
    listening: socket.socket, monkeypatch: pytest.MonkeyPatch
):
    """The workspace's Dask workers report to its Prefect server: a flow reporting elsewhere must not use them."""
    servers = _record(listening, os.getpid())
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:9/api")
    assert use_running_servers() == {"MLFLOW_TRACKING_URI": servers.mlflow_tracking_uri}


def test_a_workspace_whose_processes_died_is_ignored(listening: socket.socket):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    _record(listening, dead.pid)
    assert running_servers() is None
    assert use_running_servers() == {}
    assert "PREFECT_API_URL" not in os.environ


def test_a_workspace_whose_pid_another_process_now_has_is_ignored(listening: socket.socket):
    """The recorded start time tells a reused pid apart: here this live, listening process started later."""
    _record(listening, os.getpid(), started=process_started(os.getpid()) - 60)
    assert running_servers() is None


def test_a_workspace_that_stopped_listening_is_ignored(listening: socket.socket):
    _record(listening, os.getpid())
    listening.close()
    assert running_servers() is None


def test_servers_off_keeps_the_embedded_defaults(listening: socket.socket, monkeypatch: pytest.MonkeyPatch):
    _record(listening, os.getpid())
    monkeypatch.setenv("MLPIPE_SERVERS", "off")
    assert use_running_servers() == {}


def test_a_database_url_with_a_password_is_refused_before_anything_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from mlpipe.infra.local import up

    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path))
    with pytest.raises(ConfigError) as raised:
        up(Options(mlflow_db="postgresql://ops:hunter2-secret@db:5432/mlflow"))
    assert "--mlflow-db postgresql://ops:***@db:5432/mlflow holds a password" in str(raised.value)
    assert "hunter2" not in str(raised.value) and "PGPASSWORD" in str(raised.value)
    assert not (tmp_path / "servers" / "workspace.json").exists()


SERVE_PORTS = Ports(prefect=4200, mlflow=5000, dask=8786, dashboard=8787, serve=8000)


def _endpoint(tmp_path: Path, environment: dict[str, str], **options: object) -> Component:
    planned = components(
        Options(serve="credit", **options),  # type: ignore[arg-type]
        SERVE_PORTS,
        tmp_path,
        None,
        tmp_path,
        environment,
    )
    return next(component for component in planned if component.name == "serve")


def test_the_scoring_endpoint_serves_the_champion_and_is_ready_when_its_model_answers(tmp_path: Path):
    endpoint = _endpoint(tmp_path, {API_KEYS: "k1,k2"}, serve_workers=2)
    assert endpoint.command[1:] == [
        "-m", "mlpipe", "serve", "--model", "credit@champion", "--host", "127.0.0.1", "--port", "8000", "--workers", "2"
    ]  # fmt: skip
    assert API_KEYS not in endpoint.environment and "k1" not in " ".join(endpoint.command)  # inherited, never listed
    assert endpoint.environment["MLFLOW_TRACKING_URI"] == "http://127.0.0.1:5000"
    assert endpoint.environment["PREFECT_API_URL"] == "http://127.0.0.1:4200/api"  # promotions arrive as events
    assert isinstance(endpoint.ready, HttpAnswers) and endpoint.ready.url == f"http://127.0.0.1:8000{READY_PATH}"
    assert endpoint.url == "http://127.0.0.1:8000" and set(endpoint.after) == {"prefect", "mlflow"}
    assert "serve" not in _plan(tmp_path)  # only when asked for


def test_the_endpoint_takes_its_keys_from_a_secret_block_or_serves_without_only_on_loopback(tmp_path: Path):
    secret = _endpoint(tmp_path, {}, serve_api_keys_secret="scoring-keys")
    assert secret.command[-2:] == ["--api-keys-secret", "scoring-keys"]
    assert _endpoint(tmp_path, {}, serve_no_auth=True).command[-1] == "--no-auth"
    pinned = components(
        Options(serve="credit@challenger", serve_no_auth=True), SERVE_PORTS, tmp_path, None, tmp_path, {}
    )
    assert "credit@challenger" in pinned[-1].command


@pytest.mark.parametrize(
    ("options", "environment", "message"),
    [
        ({}, {}, "needs API keys: set MLPIPE_API_KEYS"),
        ({}, {API_KEYS: " "}, "needs API keys"),
        ({"serve_no_auth": True, "host": "0.0.0.0"}, {}, "--serve-no-auth is refused on 0.0.0.0"),
        ({"serve_no_auth": True}, {API_KEYS: "k1"}, "choose one"),
    ],
)
def test_an_endpoint_without_keys_is_refused_before_anything_starts(
    tmp_path: Path, options: dict[str, object], environment: dict[str, str], message: str
):
    with pytest.raises(ConfigError, match=message):
        _endpoint(tmp_path, environment, **options)


def test_up_without_keys_for_the_endpoint_starts_nothing(tmp_path: Path):
    result = _mlpipe("up", "--serve", "credit", home=tmp_path)
    assert result.returncode == 1 and "the scoring endpoint needs API keys" in result.stderr
    assert not (tmp_path / "servers" / "workspace.json").exists()
