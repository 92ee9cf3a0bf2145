"""Starting the workspace's processes detached from the terminal, and stopping each with all it started."""

import contextlib
import os
import signal
import socket
import subprocess
from collections.abc import Iterable
from pathlib import Path

import psutil

from mlpipe.errors import ConfigError
from mlpipe.infra.components import Component
from mlpipe.processes import still_running
from mlpipe.workspace import ServerProcess, address_family

GRACE_SECONDS = 10.0
"""How long a component has to stop on SIGTERM before it and what it started are killed
(the `mlpipe worker` itself stops its flow runs within 8 s)."""


def start(component: Component, folder: Path) -> ServerProcess:
    """Start `component` in a session of its own (a terminal's Ctrl-C or closing does not stop it)."""
    log = folder / f"{component.name}.log"
    with log.open("ab") as output:
        process = subprocess.Popen(
            component.command,
            env={**os.environ, **component.environment},
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return ServerProcess(process.pid, psutil.Process(process.pid).create_time(), component.address, str(log))


def exited(process: ServerProcess) -> bool:
    """Whether the process is gone (or is a zombie, or its pid now belongs to another process)."""
    return _process(process) is None


def _process(recorded: ServerProcess) -> psutil.Process | None:
    if not still_running(recorded.pid, recorded.started):
        return None
    try:
        return psutil.Process(recorded.pid)
    except psutil.Error:
        return None


def stop(recorded: Iterable[ServerProcess], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM each process (and its process group), then kill all of them and their descendants still running.

    Descendants are collected before the signal: a child whose parent dies is re-parented and
    would otherwise be missed.
    """
    processes = [process for process in map(_process, recorded) if process is not None]
    tree: list[psutil.Process] = list(processes)
    for process in processes:
        with contextlib.suppress(psutil.Error):
            tree += process.children(recursive=True)
        _signal_group(process.pid, signal.SIGTERM)
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(tree, timeout=grace)
    for process in alive:
        _signal_group(process.pid, signal.SIGKILL)
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def _signal_group(pid: int, number: int) -> None:
    """Signal the process group `pid` leads (each component was started as one)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        if os.getpgid(pid) == pid:
            os.killpg(pid, number)


def check_free(host: str, port: int, what: str, option: str) -> None:
    """A ConfigError naming the port, what wanted it and how to choose another, when something listens there."""
    with socket.socket(address_family(host)) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the servers bind: TIME_WAIT is no conflict
        try:
            probe.bind((host, port))
        except OSError as error:
            raise ConfigError(
                f"port {port} on {host} ({what}) is already in use ({error.strerror}): stop what listens there, "
                f"or choose another port with {option} (0: any free port)"
            ) from None


def log_tail(path: str, lines: int = 15) -> str:
    """The last lines of a component's log, to show why it did not start."""
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""
