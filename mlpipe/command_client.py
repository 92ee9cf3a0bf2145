"""Handing a command to the workspace's command server, which has the pipeline's libraries imported already.

`mlpipe up` starts a command server (`mlpipe.command_server`): one process that imports
Prefect, MLflow, Dask, great-expectations, scikit-learn, xgboost and the flows once, then forks
a child for each command. The child is given this process's arguments, working directory,
environment and terminal (stdin, stdout and stderr travel over the socket), so the command runs
as it would here, without seconds of imports. This module runs before anything else is imported
and uses only the standard library: with no command server, a command pays one failed look-up.
"""

import json
import os
import signal
import socket
import struct
import sys
from pathlib import Path

from mlpipe.workspace import COMMAND_SERVER, command_socket, running_servers

FORWARDED = frozenset(
    {"train", "demo", "generate", "sweep", "automl", "score", "explain", "card", "drift", "rollback", "gc", "deploy"}
)
"""Commands that run in the command server; `up`, `down`, `status` manage it, `serve` and `worker` run for long."""
RELAYED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGTSTP, signal.SIGCONT)
"""Signals this process passes on to the command's process: Ctrl-C and Ctrl-Z reach only the terminal's
foreground process, and the shell's `fg` or `bg` sends SIGCONT to it."""
LENGTH = struct.Struct("!I")
STATUS = struct.Struct("!i")
ACCEPTED, STALE = b"+", b"-"
"""The server's first answer: it runs the command, or its code is older than what is installed now."""
STALE_HINT = "the workspace's command server runs older mlpipe code; `mlpipe down` and `mlpipe up` restart it"


def forward(argv: list[str]) -> int | None:
    """Run `mlpipe ARGV` in the command server and return its exit status; None when it must run in this process.

    It runs here when the command is not one the server runs, `MLPIPE_SERVERS=off` (no servers) or
    `MLPIPE_COMMAND_SERVER=off` (the other servers, not this one), no workspace is up (or its
    command server is not), or the server loaded other code than is installed now.
    """
    switched_off = any(
        os.environ.get(name, "").lower() == "off" for name in ("MLPIPE_SERVERS", "MLPIPE_COMMAND_SERVER")
    )
    if command_name(argv) not in FORWARDED or switched_off:
        return None
    servers = running_servers()
    if servers is None or COMMAND_SERVER not in servers.processes:
        return None
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(str(command_socket()))
    except OSError:
        connection.close()
        return None
    with connection:
        request = {"argv": argv, "cwd": os.getcwd(), "env": dict(os.environ), "code": code_fingerprint()}
        body = json.dumps(request).encode()
        try:
            socket.send_fds(connection, [LENGTH.pack(len(body))], [0, 1, 2])
            connection.sendall(body)
            answer = connection.recv(1)
        except OSError:  # a closed standard stream, or a server that went away: run here
            return None
        if answer == STALE:
            sys.stderr.write(f"mlpipe: {STALE_HINT}\n")
        return _wait(connection) if answer == ACCEPTED else None


def command_name(argv: list[str]) -> str | None:
    """The command's name: its first argument that is not an option (`mlpipe --verbose train …`)."""
    return next((argument for argument in argv if not argument.startswith("-")), None)


def _wait(connection: socket.socket) -> int:
    """Relay signals to the command until the server sends its exit status."""

    def relay(number: int, _frame: object) -> None:
        connection.sendall(bytes([number]))
        if number == signal.SIGTSTP:  # Ctrl-Z: the command is stopped; stop here too, as the shell expects
            # SIGSTOP, as the server stops the command: the kernel discards SIGTSTP where no shell controls the
            # process group. Returns once continued (SIGCONT, relayed too).
            os.kill(os.getpid(), signal.SIGSTOP)

    for number in RELAYED_SIGNALS:
        signal.signal(number, relay)
    answer = b""
    while len(answer) < STATUS.size:
        chunk = connection.recv(STATUS.size - len(answer))
        if not chunk:
            sys.stderr.write("mlpipe: the workspace's command server stopped before the command ended\n")
            return 1
        answer += chunk
    return int(STATUS.unpack(answer)[0])


def code_fingerprint() -> str:
    """When mlpipe's installed code last changed: the newest modification time of its Python files.

    The server takes it before importing and each command sends its own, so a command never runs
    code older than what is on disk (an edit, a `git pull`, an upgrade): about 2 ms for its files.
    """
    import mlpipe

    newest = 0
    for package in _source_folders(mlpipe.__path__):
        for path in package.rglob("*.py"):
            newest = max(newest, path.stat().st_mtime_ns)
    return str(newest)


def _source_folders(roots: list[str]) -> list[Path]:
    """mlpipe's folder and those of its sub-packages installed from elsewhere (`tasks/`, `flows/`…)."""
    import importlib.util

    folders = [Path(root) for root in roots]
    for name in ("tasks", "flows", "blocks", "deployments", "infra"):
        spec = importlib.util.find_spec(f"mlpipe.{name}")
        if spec is not None and spec.submodule_search_locations:
            folders += [Path(location) for location in spec.submodule_search_locations]
    return sorted(set(folders))
