"""What `mlpipe up` runs: each component's command, environment, address and readiness check.

Everything here is plain data built from the options, so what would start (GPU workers
included, on a machine without GPUs) is checked without starting it.
"""

import importlib.util
import ipaddress
import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from mlpipe.errors import ConfigError
from mlpipe.infra.auth import (
    Credentials,
    client_environment,
    mlflow_server_environment,
    prefect_server_environment,
)
from mlpipe.infra.readiness import Check, DaskWorkersConnected, HttpAnswers, PrefectWorkerPolling, UnixSocketAccepts
from mlpipe.infra.serving.settings import API_KEYS, READY_PATH
from mlpipe.workspace import COMMAND_SERVER, COMMAND_SOCKET, GPU_RESOURCE, connect_host

LOOPBACK = "127.0.0.1"
MAX_SOCKET_PATH = 108
"""The longest path a Unix socket may have (bytes, with its terminating zero)."""
DASK_HOST = LOOPBACK
"""Dask has no password authentication: whoever reaches its scheduler runs code on its workers.
So the scheduler, its dashboard and the workers stay on loopback whatever `--host` says; a Dask
cluster that other machines reach belongs to the cluster manifests, with TLS."""
DEFAULT_ALIAS = "champion"


@dataclass(frozen=True)
class Options:
    """How the user asked for the workspace (`mlpipe up`'s options); port 0 means any free port."""

    host: str = LOOPBACK
    prefect_port: int = 4200
    mlflow_port: int = 5000
    dask_port: int = 8786
    dashboard_port: int = 8787
    prefect_db: str | None = None
    mlflow_db: str | None = None
    cpu_workers: int = 2
    gpus: int = 0
    cuda_worker: bool = False
    pool: str = "mlpipe"
    auth: bool = False
    prefect_auth_secret: str | None = None
    mlflow_password_secret: str | None = None
    serve: str | None = None
    """The registered model the scoring endpoint serves (`NAME` means `NAME@champion`); None: no endpoint."""
    serve_port: int = 8000
    serve_workers: int = 1
    serve_no_auth: bool = False
    serve_api_keys_secret: str | None = None


@dataclass(frozen=True)
class Ports:
    prefect: int
    mlflow: int
    dask: int
    dashboard: int
    serve: int = 0
    """0 when no scoring endpoint is started."""


@dataclass(frozen=True)
class Component:
    """One process to start; `address` is where it listens (`host:port`), empty for a client of the others."""

    name: str
    title: str
    command: list[str]
    environment: dict[str, str]
    ready: Check
    address: str = ""
    url: str = ""
    after: tuple[str, ...] = field(default=())
    """Components that must be ready before this one starts."""


@dataclass(frozen=True)
class Addresses:
    """Where clients on this machine reach the servers (what the state file records)."""

    prefect_api_url: str
    prefect_ui_url: str
    mlflow_tracking_uri: str
    dask_scheduler_address: str
    dask_http_url: str
    """The scheduler's HTTP server: the dashboard, its health and JSON endpoints."""
    dask_dashboard_url: str
    scoring_url: str | None = None
    """The scoring endpoint (`POST {scoring_url}/predict`), when `mlpipe up` starts one."""


def is_loopback(host: str) -> bool:
    """Whether `host` is reachable only from this machine (`localhost`, 127.x, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def addresses(options: Options, ports: Ports) -> Addresses:
    local = _url_host(connect_host(options.host))
    http = f"http://{DASK_HOST}:{ports.dashboard}"
    # Without bokeh the scheduler serves its plain information pages, not the interactive dashboard.
    page = "/status" if importlib.util.find_spec("bokeh") else "/info/main/workers.html"
    return Addresses(
        prefect_api_url=f"http://{local}:{ports.prefect}/api",
        prefect_ui_url=f"http://{local}:{ports.prefect}",
        mlflow_tracking_uri=f"http://{local}:{ports.mlflow}",
        dask_scheduler_address=f"tcp://{DASK_HOST}:{ports.dask}",
        dask_http_url=http,
        dask_dashboard_url=http + page,
        scoring_url=f"http://{local}:{ports.serve}" if options.serve else None,
    )


def python_module(module: str, *arguments: str) -> list[str]:
    """Run a module with this environment's Python: the servers use the same installed versions as mlpipe."""
    return [sys.executable, "-m", module, *arguments]


def components(
    options: Options,
    ports: Ports,
    folder: Path,
    credentials: Credentials | None,
    home: Path,
    environment: Mapping[str, str] | None = None,
) -> list[Component]:
    """Everything `mlpipe up` starts; each starts as soon as the components in its `after` are ready.

    `environment`: where the endpoint's `MLPIPE_API_KEYS` would come from (default: this process's).

    Raises:
        ConfigError: a scoring endpoint without API keys, or without them beyond loopback (`serve_arguments`).
    """
    where = addresses(options, ports)
    clients = {
        "MLPIPE_HOME": str(home),
        "PREFECT_API_URL": where.prefect_api_url,
        "MLFLOW_TRACKING_URI": where.mlflow_tracking_uri,
        "DASK_SCHEDULER_ADDRESS": where.dask_scheduler_address,
        **(client_environment(credentials) if credentials else {}),
    }
    return [
        prefect_server(options, ports.prefect, folder, credentials, where),
        mlflow_server(options, ports.mlflow, folder, credentials, where),
        dask_scheduler(ports, where),
        *dask_workers(options, folder, where, clients),
        Component(
            "worker",
            f"mlpipe worker (pool {options.pool})",
            python_module("mlpipe", "worker", "--pool", options.pool),
            clients,
            PrefectWorkerPolling(where.prefect_api_url, options.pool, clients.get("PREFECT_API_AUTH_STRING")),
            after=("prefect",),
        ),
        *([command_server(folder, clients)] if command_server_supported(folder) else []),
        *([scoring_endpoint(options, ports.serve, where, clients, environment)] if options.serve else []),
    ]


def command_server(folder: Path, clients: dict[str, str]) -> Component:
    """The process that runs the workspace's commands with the pipeline's libraries already imported."""
    path = folder / COMMAND_SOCKET
    return Component(
        COMMAND_SERVER,
        "command server",
        python_module("mlpipe.command_server", str(path)),
        clients,
        UnixSocketAccepts(str(path)),
    )


def command_server_supported(folder: Path) -> bool:
    """Linux (it waits for its children through pidfds), and a socket path within the 108 bytes Unix allows."""
    return hasattr(os, "pidfd_open") and len(str(folder / COMMAND_SOCKET).encode()) < MAX_SOCKET_PATH


def model_reference(model: str) -> str:
    """`NAME@champion` for a bare `NAME`; a reference with an alias or version stays as given."""
    return model if "@" in model or "/" in model else f"{model}@{DEFAULT_ALIAS}"


def serve_arguments(options: Options, environment: Mapping[str, str]) -> list[str]:
    """How the endpoint gets its API keys, refused as the endpoint itself refuses (checked before anything starts).

    Keys come from the Secret block named by `serve_api_keys_secret`, or from `MLPIPE_API_KEYS` in
    the environment the endpoint inherits (never on its command line, which every local user can
    list). Without keys it serves only with `serve_no_auth`, and only on loopback.

    Raises:
        ConfigError: no keys and no `--serve-no-auth`; `--serve-no-auth` beyond loopback or beside keys.
    """
    keys = bool(options.serve_api_keys_secret) or bool(environment.get(API_KEYS, "").strip())
    if options.serve_no_auth:
        if keys:
            raise ConfigError(
                f"--serve-no-auth with API keys given ({API_KEYS} or --serve-api-keys-secret): choose one"
            )
        if not is_loopback(options.host):
            raise ConfigError(
                f"--serve-no-auth is refused on {options.host} (beyond loopback): anyone reaching it could score; "
                f"set {API_KEYS} or --serve-api-keys-secret"
            )
        return ["--no-auth"]
    if options.serve_api_keys_secret:
        return ["--api-keys-secret", options.serve_api_keys_secret]
    if keys:
        return []
    raise ConfigError(
        f"the scoring endpoint needs API keys: set {API_KEYS} (comma-separated) or --serve-api-keys-secret NAME "
        "(a Prefect Secret block); on loopback, --serve-no-auth serves without keys"
    )


def scoring_endpoint(
    options: Options, port: int, where: Addresses, clients: dict[str, str], environment: Mapping[str, str] | None
) -> Component:
    """`mlpipe serve` for the model, ready once it answers `/ready` (its model is loaded).

    It starts after the MLflow server (it loads the model from the registry) and the Prefect
    server (it follows promotions by their events); on `mlpipe down` it gets SIGTERM and drains.
    """
    assert options.serve is not None and where.scoring_url is not None  # only called when serving
    reference = model_reference(options.serve)
    command = python_module("mlpipe", "serve", "--model", reference, "--host", options.host, "--port", str(port))
    command += ["--workers", str(options.serve_workers)]
    command += serve_arguments(options, os.environ if environment is None else environment)
    return Component(
        "serve",
        f"scoring endpoint ({reference})",
        command,
        clients,
        HttpAnswers(f"{where.scoring_url}{READY_PATH}"),
        address=f"{options.host}:{port}",
        url=where.scoring_url,
        after=("prefect", "mlflow"),
    )


def prefect_server(
    options: Options, port: int, folder: Path, credentials: Credentials | None, where: Addresses
) -> Component:
    """The Prefect API and UI; the UI is told its own API URL, so it works on any port and host."""
    ui_api_url = where.prefect_api_url
    if not is_loopback(options.host):
        import socket

        host = socket.gethostname() if options.host in ("0.0.0.0", "::") else options.host
        ui_api_url = f"http://{_url_host(host)}:{port}/api"
    environment = {
        "PREFECT_HOME": str(folder / "prefect"),
        "PREFECT_API_URL": where.prefect_api_url,
        "PREFECT_UI_API_URL": ui_api_url,
        "PREFECT_SERVER_DATABASE_CONNECTION_URL": options.prefect_db or f"sqlite+aiosqlite:///{folder / 'prefect.db'}",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        **(prefect_server_environment(credentials) if credentials else {}),
    }
    return Component(
        "prefect",
        "Prefect server",
        python_module("prefect", "server", "start", "--host", options.host, "--port", str(port)),
        environment,
        HttpAnswers(f"{where.prefect_api_url}/health"),
        address=f"{options.host}:{port}",
        url=where.prefect_ui_url,
    )


def mlflow_server(
    options: Options, port: int, folder: Path, credentials: Credentials | None, where: Addresses
) -> Component:
    """The tracking server and registry; it stores the artifacts clients send it (artifact proxying)."""
    command = python_module("mlflow", "server", "--host", options.host, "--port", str(port), "--workers", "2")
    command += ["--artifacts-destination", str(folder / "mlartifacts")]
    environment = {
        # In the environment, not the command line that every local user can list.
        "MLFLOW_BACKEND_STORE_URI": options.mlflow_db or f"sqlite:///{folder / 'mlflow.db'}",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",  # 5 processes instead of 12
    }
    if credentials:
        command += ["--app-name", "basic-auth"]
        environment |= mlflow_server_environment(credentials, folder)
    return Component(
        "mlflow",
        "MLflow server",
        command,
        environment,
        HttpAnswers(f"{where.mlflow_tracking_uri}/health"),
        address=f"{options.host}:{port}",
        url=where.mlflow_tracking_uri,
    )


def dask_scheduler(ports: Ports, where: Addresses) -> Component:
    dashboard = f"{DASK_HOST}:{ports.dashboard}"
    arguments = ["--host", DASK_HOST, "--port", str(ports.dask), "--dashboard-address", dashboard]
    return Component(
        "dask-scheduler",
        "Dask scheduler",
        python_module("distributed.cli.dask_scheduler", *arguments),
        {},
        HttpAnswers(f"{where.dask_http_url}/health"),
        address=f"{DASK_HOST}:{ports.dask}",
        url=where.dask_dashboard_url,
    )


def dask_workers(options: Options, folder: Path, where: Addresses, clients: dict[str, str]) -> list[Component]:
    """CPU worker processes, then GPU workers that advertise the resource `GPU` (one per GPU).

    Workers report their task runs to the workspace's Prefect server (`PREFECT_API_URL` in their
    environment): without it each worker process would start a temporary Prefect API of its own.
    """
    scheduler, counts = where.dask_scheduler_address, where.dask_http_url
    common = ["--host", DASK_HOST, "--no-dashboard", "--local-directory", str(folder / "dask")]
    common += ["--preload", "mlpipe.infra.worker_preload"]
    workers = [
        Component(
            "dask-workers",
            f"Dask CPU workers ({options.cpu_workers})",
            python_module("distributed.cli.dask_worker", scheduler, "--nworkers", str(options.cpu_workers), *common),
            clients,
            DaskWorkersConnected(counts, options.cpu_workers),
        )
    ]
    if options.gpus == 0:
        return workers
    total = DaskWorkersConnected(counts, options.cpu_workers + options.gpus)
    if options.cuda_worker:  # dask-cuda starts one worker per visible GPU and pins each to its device
        command = python_module("dask", "cuda", "worker", scheduler, "--resources", f"{GPU_RESOURCE}=1", *common)
        return [*workers, Component("dask-gpu-workers", f"Dask CUDA workers ({options.gpus})", command, clients, total)]
    for index in range(options.gpus):
        command = python_module("distributed.cli.dask_worker", scheduler, "--nworkers", "1", "--nthreads", "1")
        command += ["--resources", f"{GPU_RESOURCE}=1", "--name", f"gpu-{index}", *common]
        environment = {**clients, "CUDA_VISIBLE_DEVICES": str(index)}
        workers.append(Component(f"dask-gpu-worker-{index}", f"Dask GPU worker {index}", command, environment, total))
    return workers


def detect_gpus() -> int:
    """NVIDIA GPUs on this machine: pynvml when installed, else `nvidia-smi -L`; 0 when neither answers."""
    if importlib.util.find_spec("pynvml"):
        import pynvml

        try:
            pynvml.nvmlInit()
            return int(pynvml.nvmlDeviceGetCount())
        except pynvml.NVMLError:
            return 0
    executable = shutil.which("nvidia-smi")
    if executable is None:
        return 0
    try:
        listing = subprocess.run([executable, "-L"], capture_output=True, text=True, timeout=20, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(line.startswith("GPU ") for line in listing.splitlines())


def cuda_worker_available() -> bool:
    """Whether `dask cuda worker` (dask-cuda) is installed."""
    return importlib.util.find_spec("dask_cuda") is not None
