"""Server processes a test starts as a user would: on 127.0.0.1, on a free port, stopped afterwards."""

import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(command: list[str], health: str, log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """Run `command` until the block ends, once `health` answers (its stderr in `log`, shown if it never does)."""
    server = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(health, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise AssertionError(log.read_text()[-3000:]) from None
                time.sleep(0.5)
        yield server
    finally:
        server.terminate()
        server.wait(timeout=60)
