"""The temporary Prefect API of a command run with no Prefect server, started before Prefect is imported.

With no `PREFECT_API_URL`, Prefect's client starts a temporary API server (`python -m uvicorn …
prefect.server.api.server:create_app`) on the flow's first call. Reaching Prefect's own starter
means importing the server's whole application first (seconds, on every command); this module
starts the same server with the same command line as the command begins, points the command's
process and its children at it through `PREFECT_API_URL`, and stops it when the command exits,
as Prefect's own starter does. Its process dies with the command even when the command is killed.
"""

import atexit
import ctypes
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from mlpipe.cli.prefect_database import PREPARED, PREPARING, PrefectDatabase
from mlpipe.errors import MlpipeError
from mlpipe.runtime import prefect_setting
from mlpipe.workspace import free_port

TEMPORARY_API = "MLPIPE_TEMPORARY_PREFECT_API"
"""Set to 1 while a command's `PREFECT_API_URL` names its own temporary API (gone when it exits)."""
STOP_SECONDS = 5.0
"""How long the server has to stop on SIGTERM at exit before it is killed (Prefect's own figure)."""


class TemporaryApiFailed(MlpipeError):
    """The temporary Prefect API did not answer in time, or exited."""


@dataclass
class TemporaryApi:
    """A temporary Prefect API server process this command started."""

    process: subprocess.Popen[bytes]
    url: str
    preparing: PrefectDatabase | None = None
    """The database this start prepares (migrations, block types), recorded as prepared once the server answers."""

    @staticmethod
    def needed() -> bool:
        """Whether Prefect would start a temporary API for this command: no server named, temporary ones allowed.

        Only before Prefect is imported: Prefect reads its settings once, so a process that already
        imported it would not see the URL and would start a server of its own.
        """
        if "prefect" in sys.modules:
            return False
        enabled = (prefect_setting("PREFECT_SERVER_EPHEMERAL_ENABLED") or "true").lower() not in ("0", "false")
        return not prefect_setting("PREFECT_API_URL") and enabled

    @classmethod
    def start(cls) -> "TemporaryApi":
        """Start the server on a free port of 127.0.0.1 and point this process (and its children) at it."""
        port = free_port()
        spec = importlib.util.find_spec("prefect")  # where Prefect is installed, without importing it
        assert spec is not None and spec.origin is not None
        command = [sys.executable, "-m", "uvicorn", "--app-dir", str(Path(spec.origin).parent.parent)]
        command += ["--factory", "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port", str(port)]
        command += ["--log-level", "error", "--lifespan", "on"]
        server_env = {"PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1", "PREFECT__SERVER_FINAL": "1"}
        database = PrefectDatabase.default()  # None: the user's own database settings, Prefect's start
        prepared = database is not None and database.prepared()
        if database is not None:
            server_env.update(PREPARED if prepared else PREPARING)
        process = subprocess.Popen(command, env={**os.environ, **server_env}, preexec_fn=_die_with_parent)
        api = cls(process, f"http://127.0.0.1:{port}/api", preparing=None if prepared else database)
        atexit.register(api.stop)
        os.environ["PREFECT_API_URL"] = api.url
        os.environ[TEMPORARY_API] = "1"
        return api

    def wait(self) -> None:
        """Return once the server answers; raise if it exited or did not answer in time."""
        seconds = float(prefect_setting("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS") or 20)
        deadline = time.monotonic() + seconds
        while not self._answers():
            if self.process.poll() is not None:
                raise TemporaryApiFailed(
                    f"the temporary Prefect API exited (code {self.process.returncode}) before it answered; "
                    "run the command again, or start a server with `mlpipe up`"
                )
            if time.monotonic() > deadline:
                self.stop()
                raise TemporaryApiFailed(
                    f"the temporary Prefect API did not answer within {seconds:.0f} s "
                    "(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS); a busy machine may need more"
                )
            time.sleep(0.1)
        if self.preparing is not None:  # the server prepares its database before it answers
            self.preparing.record_prepared()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def _answers(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.url}/health", timeout=1) as response:
                return bool(response.status == 200)
        except (urllib.error.URLError, OSError):
            return False


def _die_with_parent() -> None:
    """In the server's process before it runs: on Linux, be sent SIGTERM when the command's process dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
