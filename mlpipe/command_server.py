"""The workspace's command server: the pipeline's libraries imported once, a forked child for each command.

A command imports Prefect, MLflow, Dask and the flows before its flow starts (seconds on every
command, more than a small training's own work). `mlpipe up` starts this server, which imports
them once; a command (`mlpipe.command_client`) sends it its arguments, working directory,
environment and terminal, and the server forks a child that runs the command with them. The
child starts with everything imported and exits as the command would; the server sends its exit
status back. Each command is a process of its own, so commands run at once and share no state.

Forking is safe because the server has one thread when it forks (checked once its imports are
done). Only this user's processes reach it: the socket is created 0600 in the workspace folder,
and the peer's user id is checked.

    python -m mlpipe.command_server SOCKET
"""

import atexit
import contextlib
import importlib
import json
import logging
import os
import selectors
import signal
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from mlpipe.command_client import ACCEPTED, LENGTH, RELAYED_SIGNALS, STALE, STATUS, code_fingerprint, command_name
from mlpipe.runtime import settings_read_before_configured

PRELOADED = (
    "prefect.flow_engine",
    "prefect.task_engine",
    "mlpipe.flows.training",
    "mlpipe.flows.sweep",
    "mlpipe.flows.scoring",
    "mlpipe.flows.drift",
    "mlpipe.flows.retraining",
    "mlpipe.tasks.model.pyfunc",
    "mlpipe.tasks.model.preprocessing",
    "mlflow.tracking",
    "sklearn",
    "xgboost",
    "great_expectations",
    "typer",
    "rich.table",
)
"""What the commands' own processes import: Prefect's engine, the flows, the libraries their steps use there,
and the command line's (not `mlpipe.cli` itself: its consoles read the terminal and the environment as
they are created, so each command creates its own)."""
REQUEST_SECONDS = 5.0
"""How long a connected client has to send its request."""
ENDING_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
"""Relayed signals that end a command: a stopped one is continued after them, to act on them."""

log = logging.getLogger("mlpipe.command_server")


@dataclass
class Command:
    """A command's child process and the client waiting for it."""

    pid: int
    connection: socket.socket
    exited: int
    """A pidfd: readable once the child has exited."""
    name: str
    started: float
    client_gone: bool = False


def main(path: Path) -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    code = code_fingerprint()  # before the imports: the code they load is at least this new
    began = time.monotonic()
    for module in PRELOADED:
        importlib.import_module(module)
    if "mlpipe.cli" in sys.modules:  # its consoles would keep the server's terminal settings
        raise SystemExit("a preloaded module imported mlpipe.cli; each command imports it in its own process")
    if threading.active_count() != 1:
        names = [thread.name for thread in threading.enumerate()]
        raise SystemExit(f"a preloaded library started threads ({names}); forking would not be safe")
    log.info("imported the pipeline's libraries in %.1f s; listening on %s", time.monotonic() - began, path)
    path.unlink(missing_ok=True)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    previous = os.umask(0o177)
    try:
        listener.bind(str(path))
    finally:
        os.umask(previous)
    listener.listen(16)
    signal.signal(signal.SIGTERM, lambda *_: _stop(listener, path))
    _serve(listener, code)


def _serve(listener: socket.socket, code: str) -> None:
    """Accept commands, and report each child's exit to its client; one thread throughout."""
    selector = selectors.DefaultSelector()
    selector.register(listener, selectors.EVENT_READ)
    running: dict[int, Command] = {}
    while True:
        for key, _ in selector.select():
            if key.fileobj is listener:
                command = _accept(listener, code, selector, running.values())
                if command is not None:
                    running[command.pid] = command
                    selector.register(command.exited, selectors.EVENT_READ, command)
                    selector.register(command.connection, selectors.EVENT_READ, command)
            elif key.data.pid not in running:
                continue  # its command ended earlier in this round
            elif key.fileobj == key.data.exited:
                _finish(key.data, selector)
                running.pop(key.data.pid, None)
            else:
                _relay(key.data, selector)


def _accept(
    listener: socket.socket, code: str, selector: selectors.BaseSelector, running: Iterable[Command]
) -> Command | None:
    connection, _ = listener.accept()
    connection.settimeout(REQUEST_SECONDS)
    fds: list[int] = []
    try:
        request, fds = _read_request(connection)
        connection.sendall(ACCEPTED if request["code"] == code else STALE)
        if request["code"] != code:
            raise ValueError("the command runs other code")
        pid = os.fork()
    except (OSError, ValueError):  # a readiness probe, a client that went away, or older code here
        connection.close()
        for fd in fds:
            os.close(fd)
        return None
    if pid == 0:
        selector.close()
        for other in running:
            other.connection.close()
            os.close(other.exited)
        listener.close()
        connection.close()
        _run_in_child(request, fds)
    for fd in fds:
        os.close(fd)
    connection.setblocking(False)
    name = str(command_name(request["argv"]))
    log.info("%s (pid %d) started", name, pid)
    return Command(pid, connection, os.pidfd_open(pid), name, time.monotonic())


def _read_request(connection: socket.socket) -> tuple[dict[str, Any], list[int]]:
    """The client's request and its stdin, stdout and stderr; ValueError for anything else."""
    uid = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
    header, fds, _, _ = socket.recv_fds(connection, LENGTH.size, 3)
    try:
        if uid != os.getuid() or len(header) != LENGTH.size or len(fds) != 3:
            raise ValueError("not a command from this user")
        (size,) = LENGTH.unpack(header)
        body = b""
        while len(body) < size:
            chunk = connection.recv(size - len(body))
            if not chunk:
                raise ValueError("the request ended early")
            body += chunk
        request = json.loads(body)
        if not isinstance(request, dict) or set(request) != {"argv", "cwd", "env", "code"}:
            raise ValueError("not a command's request")
    except (OSError, ValueError):
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


def _relay(command: Command, selector: selectors.BaseSelector) -> None:
    """Pass a signal the client received on to the child; a client gone ends the command (SIGTERM)."""
    try:
        received = command.connection.recv(16)
    except BlockingIOError:
        return
    except OSError:
        received = b""
    if not received:  # nobody waits for the command any more
        selector.unregister(command.connection)
        command.client_gone = True
    for number in received or [signal.SIGTERM]:
        if number in RELAYED_SIGNALS:
            # The child is in no terminal's foreground group: the kernel ignores SIGTSTP there, SIGSTOP it cannot.
            _signal(command.pid, signal.SIGSTOP if number == signal.SIGTSTP else number)
        if number in ENDING_SIGNALS:
            _signal(command.pid, signal.SIGCONT)  # a stopped command (Ctrl-Z) acts on it only once continued


def _finish(command: Command, selector: selectors.BaseSelector) -> None:
    _, wait_status = os.waitpid(command.pid, 0)
    status = os.waitstatus_to_exitcode(wait_status)
    status = 128 - status if status < 0 else status  # killed by a signal: the shell's convention
    log.info(
        "%s (pid %d) exited %d after %.1f s", command.name, command.pid, status, time.monotonic() - command.started
    )
    selector.unregister(command.exited)
    if not command.client_gone:
        selector.unregister(command.connection)
    os.close(command.exited)
    try:
        command.connection.setblocking(True)
        command.connection.sendall(STATUS.pack(status))
    except OSError:
        pass  # the client is gone
    command.connection.close()


def _signal(pid: int, number: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, number)


def _run_in_child(request: dict[str, Any], fds: list[int]) -> NoReturn:
    """Become the command: the client's terminal, directory, environment and arguments; exit with its status."""
    for number, fd in enumerate(fds):
        os.dup2(fd, number)
        os.close(fd)
    for number in (*RELAYED_SIGNALS, signal.SIGCHLD):
        signal.signal(number, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    status = 1
    try:
        os.chdir(request["cwd"])
        settings_read_before_configured(os.environ)
        os.environ.clear()
        os.environ.update(request["env"])
        sys.argv = ["mlpipe", *request["argv"]]
        _reopen_standard_streams()
        log.handlers.clear()  # the server's own lines go to its log file
        from mlpipe.cli import app

        status = _exit_status(lambda: app(args=request["argv"], prog_name="mlpipe"))
    finally:
        # The command's exit as the interpreter would end it: exit handlers (Prefect's log and event
        # shipping, mlpipe's own), then flushed streams; `os._exit` skips the server's frames.
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
        os._exit(status)


def _exit_status(run: Callable[[], object]) -> int:
    try:
        run()
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            return stop.code or 0
        sys.stderr.write(f"{stop.code}\n")
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


def _reopen_standard_streams() -> None:
    """Streams on the client's descriptors, buffered as Python buffers them for a terminal or a file."""
    sys.stdin = os.fdopen(0, "r", encoding="utf-8", closefd=False)
    sys.stdout = os.fdopen(1, "w", buffering=1 if os.isatty(1) else -1, encoding="utf-8", closefd=False)
    sys.stderr = os.fdopen(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace", closefd=False)


def _stop(listener: socket.socket, path: Path) -> NoReturn:
    listener.close()
    path.unlink(missing_ok=True)
    sys.exit(0)


if __name__ == "__main__":
    main(Path(sys.argv[1]))
