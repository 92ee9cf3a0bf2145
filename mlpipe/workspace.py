"""Where a local workspace lives (`MLPIPE_HOME`, or `./.mlpipe`), what this machine offers, and its servers.

The servers are those `mlpipe up` runs; this module only reads their record (the core layer
starts nothing), so every command can find them in milliseconds.
"""

import json
import os
import socket
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mlpipe.processes import still_running

GPU_RESOURCE = "GPU"
"""The Dask worker resource a GPU worker advertises (`dask worker ADDRESS --resources GPU=1`, or dask-cuda)
and GPU tasks are annotated with: the workspace's workers, the manifests and the flows share this name."""


def available_cores() -> int:
    """CPU cores this process may use (its affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def workspace_id() -> str:
    """A random id written once per workspace directory.

    It is part of every cache key (through the resolved Datastore), so a deleted and recreated
    workspace never reuses cached results that point into the old one.
    """
    path = workspace_home() / "workspace-id"
    if not path.exists():
        # Written whole under another name, then linked into place: a link never replaces an
        # existing file, so when two processes create a workspace at once, the first id wins
        # and both read it.
        temporary = path.with_name(f".workspace-id.{uuid.uuid4().hex}")
        temporary.write_text(uuid.uuid4().hex)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_text().strip()


def workspace_home() -> Path:
    """The absolute workspace directory, created on first use."""
    home = Path(os.environ.get("MLPIPE_HOME", ".mlpipe")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home


SERVERS_FOLDER = "servers"
"""Under the workspace: `mlpipe up`'s state file, logs and databases."""
ESSENTIAL = ("prefect", "mlflow", "dask-scheduler")
"""The components without which commands cannot use the running workspace."""


@dataclass(frozen=True)
class ServerProcess:
    """One process `mlpipe up` started: its pid (and start time, so a reused pid is not taken for it)."""

    pid: int
    started: float
    address: str
    """`host:port` it listens on; empty for a process that only connects (workers)."""
    log: str


@dataclass(frozen=True)
class Servers:
    """What `mlpipe up` runs: the addresses clients use and the processes behind them.

    The state file is the one record of a running workspace: `mlpipe up` writes it, `down` and
    `status` read it, and every command reads it (`running_servers`) to use the servers by itself.
    It holds no credential.
    """

    prefect_api_url: str
    mlflow_tracking_uri: str
    dask_scheduler_address: str
    dask_dashboard_url: str
    auth: bool
    processes: dict[str, ServerProcess] = field(default_factory=dict)
    scoring_url: str | None = None
    """The scoring endpoint `mlpipe up --serve` started (None without one)."""

    def client_environment(self) -> dict[str, str]:
        """The standard variables that point a client at these servers."""
        return {
            "PREFECT_API_URL": self.prefect_api_url,
            "MLFLOW_TRACKING_URI": self.mlflow_tracking_uri,
            "DASK_SCHEDULER_ADDRESS": self.dask_scheduler_address,
        }

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2)

    @classmethod
    def from_json(cls, text: str) -> "Servers":
        data = json.loads(text)
        processes = {name: ServerProcess(**process) for name, process in data.pop("processes").items()}
        return cls(**data, processes=processes)


def servers_folder() -> Path:
    """Where `mlpipe up` keeps its state, logs and databases (created on first use)."""
    folder = workspace_home() / SERVERS_FOLDER
    folder.mkdir(exist_ok=True)
    return folder


COMMAND_SERVER = "commands"
"""The name of the command server among `mlpipe up`'s processes (`mlpipe.command_server`)."""
COMMAND_SOCKET = "commands.sock"


def command_socket() -> Path:
    """Where the command server listens: a Unix socket in the servers' folder that only this user may open."""
    return servers_folder() / COMMAND_SOCKET


def servers_state_file() -> Path:
    return servers_folder() / "workspace.json"


def read_servers() -> Servers | None:
    """The recorded state of `mlpipe up` in this workspace, alive or not (None when there is none).

    A file that is not such a state is a ValueError naming it.
    """
    path = servers_state_file()
    try:
        return Servers.from_json(path.read_text())
    except FileNotFoundError:
        return None
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"{path}: not a state file of `mlpipe up` ({error}); remove it") from None


def running_servers() -> Servers | None:
    """The workspace's servers when `mlpipe up` runs them now; None when none were started or they stopped.

    Cheap enough for every command (a few milliseconds): the essential processes must be alive
    and each must accept a TCP connection. A state file left by processes that died is ignored.
    """
    try:
        servers = read_servers()
    except ValueError:
        return None
    if servers is None:
        return None
    for name in ESSENTIAL:
        process = servers.processes.get(name)
        if process is None or not still_running(process.pid, process.started):
            return None
        if not accepts_connections(process.address):
            return None
    return servers


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on at `host` now."""
    with socket.socket(address_family(host)) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


def address_family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def accepts_connections(address: str, timeout: float = 0.5) -> bool:
    """Whether something accepts a TCP connection at `host:port`."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((connect_host(host), int(port)), timeout=timeout).close()
    except (OSError, ValueError):
        return False
    return True


def connect_host(host: str) -> str:
    """The address a client on this machine uses for a server listening on `host` (every interface → loopback)."""
    return "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host.strip("[]")
