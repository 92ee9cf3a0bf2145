"""`mlpipe up`, `down` and `status`: the local workspace's servers as processes recorded in one state file.

Components start in parallel (the Prefect and MLflow servers take 6–25 s each); one that needs
another (the Prefect worker needs its server) starts as soon as that one is ready. A lock keeps
two `up`s or an `up` and a `down` from interleaving.
"""

import contextlib
import fcntl
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path

from mlpipe.errors import ConfigError, MlpipeError
from mlpipe.infra import processes
from mlpipe.infra.auth import resolve_credentials
from mlpipe.infra.components import (
    DASK_HOST,
    Component,
    Options,
    Ports,
    addresses,
    components,
    is_loopback,
    serve_arguments,
)
from mlpipe.redaction import password_of, redact
from mlpipe.workspace import (
    ESSENTIAL,
    ServerProcess,
    Servers,
    accepts_connections,
    free_port,
    read_servers,
    servers_folder,
    servers_state_file,
    workspace_home,
)

START_SECONDS = 180.0
"""The longest a component may take to be ready (a fresh Prefect database on a slow disk takes ~25 s)."""
STOP_FIRST = ("worker",)
"""Stopped before the servers, so it can still tell the Prefect server about its runs."""


class StartFailed(MlpipeError):
    """A component exited or never became ready; everything started was stopped again."""


@dataclass(frozen=True)
class ComponentState:
    name: str
    state: str
    """running | starting (alive, not answering) | stopped"""
    url: str
    pid: int


def up(options: Options, on_ready: Callable[[Component, float], None] = lambda *_: None) -> tuple[Servers, bool]:
    """Start the workspace, or find it running; returns its servers and whether they were running already.

    Everything is checked before anything starts (credentials beyond loopback, free ports), and a
    component that fails stops all the others: `up` leaves a whole workspace or none.
    """
    with _locked():
        existing = read_servers()
        if existing is not None:
            if all(not processes.exited(process) for process in existing.processes.values()):
                return existing, True
            _stop_all(existing)  # what is left of a workspace that partly stopped
        _check_databases(options)
        credentials = None
        if options.auth or not is_loopback(options.host):
            reason = "--auth" if is_loopback(options.host) else f"listening on {options.host} (beyond loopback)"
            credentials = resolve_credentials(reason, options.prefect_auth_secret, options.mlflow_password_secret)
        if options.serve:
            serve_arguments(options, os.environ)  # no keys: refused before a port is taken
        ports = _ports(options)
        folder = servers_folder()
        planned = components(options, ports, folder, credentials, workspace_home())
        where = addresses(options, ports)
        servers = Servers(
            prefect_api_url=where.prefect_api_url,
            mlflow_tracking_uri=where.mlflow_tracking_uri,
            dask_scheduler_address=where.dask_scheduler_address,
            dask_dashboard_url=where.dask_dashboard_url,
            auth=credentials is not None,
            scoring_url=where.scoring_url,
        )
        try:
            servers = _start(planned, servers, folder, on_ready)
        except BaseException:
            _stop_all(read_servers() or servers)
            raise
        return servers, False


def _check_databases(options: Options) -> None:
    """Database URLs carry no password: it would sit in the servers' environment and every message."""
    for option, url in (("--prefect-db", options.prefect_db), ("--mlflow-db", options.mlflow_db)):
        if url and password_of(url):
            raise ConfigError(
                f"{option} {redact(url)} holds a password; keep it out of the URL: "
                "PostgreSQL clients read it from PGPASSWORD or ~/.pgpass"
            )


def _ports(options: Options) -> Ports:
    """The ports asked for, each checked free now, or free ports for those given as 0."""
    asked = {
        "prefect": (options.host, options.prefect_port, "the Prefect server", "--prefect-port"),
        "mlflow": (options.host, options.mlflow_port, "the MLflow server", "--mlflow-port"),
        "dask": (DASK_HOST, options.dask_port, "the Dask scheduler", "--dask-port"),
        "dashboard": (DASK_HOST, options.dashboard_port, "the Dask dashboard", "--dashboard-port"),
    }
    if options.serve:
        asked["serve"] = (options.host, options.serve_port, "the scoring endpoint", "--serve-port")
    chosen: dict[str, int] = {}
    for name, (host, port, what, option) in asked.items():
        if port == 0:
            while (port := free_port(host)) in chosen.values():
                pass
        elif port in chosen.values():
            raise MlpipeError(f"port {port} ({what}, {option}) is given to two components; choose another")
        processes.check_free(host, port, what, option)
        chosen[name] = port
    return Ports(**chosen)


def _start(
    planned: list[Component], servers: Servers, folder: Path, on_ready: Callable[[Component, float], None]
) -> Servers:
    """Start each component once those it needs are ready; record every process as soon as it exists."""
    began = time.monotonic()
    waiting = list(planned)
    starting: dict[str, Component] = {}
    ready: set[str] = set()
    state_file = servers_state_file()
    while waiting or starting:
        for component in [c for c in waiting if set(c.after) <= ready]:
            waiting.remove(component)
            process = processes.start(component, folder)
            servers = replace(servers, processes={**servers.processes, component.name: process})
            _write(state_file, servers)
            starting[component.name] = component
        for name, component in list(starting.items()):
            process = servers.processes[name]
            if component.ready.ready():
                del starting[name]
                ready.add(name)
                on_ready(component, time.monotonic() - began)
            elif processes.exited(process):
                raise StartFailed(_failure(component, process, "exited"))
            elif time.monotonic() - began > START_SECONDS:
                raise StartFailed(_failure(component, process, f"was not ready after {START_SECONDS:.0f} s"))
        time.sleep(0.2)
    return servers


def _failure(component: Component, process: ServerProcess, what: str) -> str:
    return (
        f"{component.title} {what}; everything started was stopped. Its log ({process.log}) ends:\n"
        + processes.log_tail(process.log)
    )


def _write(path: Path, servers: Servers) -> None:
    """Replace the state file whole (a reader never sees half of it)."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(servers.to_json())
    temporary.replace(path)


def down() -> list[str]:
    """Stop every process of the workspace and wait until its ports are closed; the names stopped."""
    with _locked():
        servers = read_servers()
        if servers is None:
            return []
        _stop_all(servers)
        return [name for name in servers.processes]


def _stop_all(servers: Servers) -> None:
    """The worker first (it reports its runs' end to the Prefect server), then everything else at once."""
    first = [process for name, process in servers.processes.items() if name in STOP_FIRST]
    rest = [process for name, process in servers.processes.items() if name not in STOP_FIRST]
    processes.stop(first)
    processes.stop(rest)
    deadline = time.monotonic() + 10
    while any(p.address and accepts_connections(p.address, 0.2) for p in rest) and time.monotonic() < deadline:
        time.sleep(0.2)
    servers_state_file().unlink(missing_ok=True)


def status() -> tuple[Servers | None, list[ComponentState]]:
    """The recorded servers (None when `up` never ran or `down` ran last) and each component's state now."""
    servers = read_servers()
    if servers is None:
        return None, []
    states = []
    for name, process in servers.processes.items():
        if processes.exited(process):
            state = "stopped"
        elif not process.address or accepts_connections(process.address):
            state = "running"
        else:
            state = "starting"
        states.append(ComponentState(name, state, _url(servers, name), process.pid))
    return servers, states


def _url(servers: Servers, name: str) -> str:
    return {
        "prefect": servers.prefect_api_url.removesuffix("/api"),
        "mlflow": servers.mlflow_tracking_uri,
        "dask-scheduler": servers.dask_dashboard_url,
        "serve": servers.scoring_url or "",
    }.get(name, "")


def essential_running(states: list[ComponentState]) -> bool:
    """Whether commands use this workspace (its Prefect, MLflow and Dask scheduler run)."""
    running = {state.name for state in states if state.state == "running"}
    return set(ESSENTIAL) <= running


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    with (servers_folder() / "lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield
