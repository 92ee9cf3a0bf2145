"""`mlpipe up` as a user runs it: real servers on 127.0.0.1, used by commands, closed without credentials.

One workspace for the module, started with `--auth` so its servers are configured exactly as
beyond loopback (`--host 0.0.0.0` forces the same credentials on), while listening on loopback only.
"""

import base64
import contextlib
import json
import os
import re
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil
import pytest

from mlpipe.demo_data import credit_default
from mlpipe.workspace import accepts_connections

pytestmark = pytest.mark.e2e
MLPIPE = str(Path(sys.executable).parent / "mlpipe")
FREE_PORTS = ["--prefect-port", "0", "--mlflow-port", "0", "--dask-port", "0", "--dashboard-port", "0"]
CREDENTIALS = {
    "PREFECT_API_AUTH_STRING": "ops:prefect-test-secret",
    "MLFLOW_TRACKING_USERNAME": "ops",
    "MLFLOW_TRACKING_PASSWORD": "mlflow-test-secret",
}


@dataclass(frozen=True)
class Workspace:
    folder: Path
    environment: dict[str, str]
    status: dict[str, Any]

    def mlpipe(self, *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [MLPIPE, *args], env=self.environment, cwd=self.folder, capture_output=True, text=True, timeout=timeout
        )

    def current_status(self) -> dict[str, Any]:
        result = self.mlpipe("status", "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Workspace]:
    folder = tmp_path_factory.mktemp("up")
    environment = {**os.environ, "MLPIPE_HOME": str(folder / "workspace"), **CREDENTIALS}
    for name in (
        "PREFECT_API_URL",
        "MLFLOW_TRACKING_URI",
        "DASK_SCHEDULER_ADDRESS",
        "PREFECT_RESULTS_LOCAL_STORAGE_PATH",
    ):
        environment.pop(name, None)
    started = Workspace(folder, environment, {})
    try:
        result = started.mlpipe("up", "--auth", *FREE_PORTS, "--workers", "1", timeout=400)
        assert result.returncode == 0, result.stdout + result.stderr
        yield Workspace(folder, environment, started.current_status())
    finally:
        started.mlpipe("down", timeout=120)


def _request(url: str, auth: str | None = None, body: bytes | None = None) -> int:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    if auth:
        request.add_header("Authorization", f"Basic {base64.b64encode(auth.encode()).decode()}")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def _json(url: str, auth: str, body: dict[str, Any] | None = None) -> Any:
    request = urllib.request.Request(url, data=json.dumps(body).encode() if body is not None else None)
    request.add_header("Content-Type", "application/json")
    request.add_header("Authorization", f"Basic {base64.b64encode(auth.encode()).decode()}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)


def test_up_again_reports_what_runs_and_starts_nothing(workspace: Workspace):
    result = workspace.mlpipe("up", "--auth", *FREE_PORTS, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert "already running" in result.stdout
    assert workspace.current_status() == workspace.status  # same processes, same URLs


def test_status_shows_each_component_running_and_its_urls_answer(workspace: Workspace):
    status = workspace.status
    assert status["running"] is True and status["auth"] is True
    components = status["components"]
    assert set(components) == {"prefect", "mlflow", "dask-scheduler", "dask-workers", "commands", "worker"}
    assert {component["state"] for component in components.values()} == {"running"}
    api = status["prefect_api_url"]
    assert _request(f"{api}/health") == 200
    with urllib.request.urlopen(components["prefect"]["url"] + "/ui-settings", timeout=30) as response:
        assert json.load(response)["api_url"] == api  # the UI calls its own server, on whatever port
    assert _request(f"{status['mlflow_tracking_uri']}/health") == 200
    assert _request(status["dask_dashboard_url"]) == 200
    assert accepts_connections(status["dask_scheduler_address"].removeprefix("tcp://"))


def test_the_prefect_server_stores_the_events_it_receives_within_half_a_second(workspace: Workspace):
    """A drift check reads its alarm back from the API before it returns: with Prefect's 5 s default a check
    on 3,000 rows took 5.0 s, 2.3 s with 0.5 s."""
    auth = CREDENTIALS["PREFECT_API_AUTH_STRING"]
    settings = _json(f"{workspace.status['prefect_api_url']}/admin/settings", auth)
    assert settings["server"]["services"]["event_persister"]["flush_interval"] == 0.5


def test_the_servers_refuse_requests_without_credentials(workspace: Workspace):
    flows = f"{workspace.status['prefect_api_url']}/flows/filter"
    assert _request(flows, body=b"{}") == 401
    assert _request(flows, auth="ops:wrong", body=b"{}") == 401
    assert _request(flows, auth=CREDENTIALS["PREFECT_API_AUTH_STRING"], body=b"{}") == 200
    experiments = f"{workspace.status['mlflow_tracking_uri']}/api/2.0/mlflow/experiments/search?max_results=1"
    assert _request(experiments) == 401
    assert _request(experiments, auth="ops:password1234") == 401
    assert _request(experiments, auth="ops:" + CREDENTIALS["MLFLOW_TRACKING_PASSWORD"]) == 200


def _descendants_seen(pid: int, stop: threading.Event, seen: set[str]) -> None:
    """Every process `pid` starts while it runs (polled), as command lines."""
    try:
        parent = psutil.Process(pid)
        while not stop.wait(0.1):
            for child in parent.children(recursive=True):
                with contextlib.suppress(psutil.Error):
                    seen.add(" ".join(child.cmdline()))
    except psutil.Error:
        return


def _flow_run_events(api: str, auth: str, run_id: str, until: str) -> list[str]:
    """The names of the events stored about one flow run, once the event `until` is among them (30 s at most)."""
    about_the_run = {"filter": {"resource": {"id": [f"prefect.flow-run.{run_id}"]}}, "limit": 50}
    deadline = time.monotonic() + 30
    while True:
        names = [event["event"] for event in _json(f"{api}/events/filter", auth, about_the_run)["events"]]
        if until in names or time.monotonic() > deadline:
            return names
        time.sleep(0.5)


def _tasks_finished_on(scheduler: str) -> int:
    """How many tasks the scheduler saw finish (its transition log)."""
    from distributed import Client

    def finished(dask_scheduler: Any) -> int:
        return sum(1 for transition in dask_scheduler.transition_log if transition[2] == "memory")

    with Client(scheduler, timeout=30) as client:
        return int(client.run_on_scheduler(finished))


def test_the_workers_import_the_steps_libraries_before_any_step_asks(workspace: Workspace):
    """A fresh worker would import great-expectations, MLflow, scikit-learn and xgboost in the user's first run."""
    from distributed import Client

    def preloaded() -> bool:  # defined here, so that it travels to the workers by value
        import sys

        from mlpipe.infra.worker_preload import PRELOADED

        return all(module in sys.modules for module in PRELOADED)

    with Client(workspace.status["dask_scheduler_address"], timeout=30) as client:
        deadline = time.monotonic() + 120  # two workers importing at once on a busy machine
        while not all((answers := client.run(preloaded)).values()) and time.monotonic() < deadline:
            time.sleep(1)
        assert answers and all(answers.values()), answers
        assert _tasks_finished_on(workspace.status["dask_scheduler_address"]) == 0  # no step has run yet


def test_the_workers_do_not_sample_their_stacks(workspace: Workspace):
    """Dask's profiler takes the GIL from the running step 100 times a second (sweep trials ran 4 % longer)."""
    from distributed import Client, Worker

    def samples_stacks(dask_worker: Worker) -> bool:  # defined here, so that it travels to the workers by value
        return "profile" in dask_worker.periodic_callbacks

    with Client(workspace.status["dask_scheduler_address"], timeout=30) as client:
        answers = client.run(samples_stacks)
    assert answers and not any(answers.values()), answers


def test_train_uses_the_workspace_and_starts_no_temporary_api(workspace: Workspace):
    data = workspace.folder / "tiny.csv"
    credit_default(rows=300, seed=3).to_csv(data, index=False)
    finished_before = _tasks_finished_on(workspace.status["dask_scheduler_address"])
    command = [MLPIPE, "train", "--data", str(data), "--target", "default", "--name", "up-model"]
    train = subprocess.Popen(
        command,
        env=workspace.environment,
        cwd=workspace.folder,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    stop, seen = threading.Event(), set[str]()
    watcher = threading.Thread(target=_descendants_seen, args=(train.pid, stop, seen))
    watcher.start()
    try:
        stdout, stderr = train.communicate(timeout=400)
    finally:
        stop.set()
        watcher.join()
    assert train.returncode == 0, stderr[-3000:]
    status = workspace.status
    assert f"Using the servers of `mlpipe up`: Prefect {status['prefect_api_url']}" in stderr
    # A line per step, though the steps ran on the workspace's workers (Prefect logged their ends there), and
    # the flow's own line after them.
    lines = stderr.splitlines()
    steps = [
        line
        for step in ("ingest", "validate", "train", "evaluate", "register")
        for line in lines
        if f" {step}: " in line
    ]
    assert [line.split(": ")[-1] for line in steps] == ["done"] * 5, stderr
    assert lines.index(steps[-1]) < next(i for i, line in enumerate(lines) if "flow run '" in line and ": done" in line)
    assert not [line for line in seen if "uvicorn" in line or "prefect.server" in line]  # no temporary API
    # the workspace's Dask workers ran this command's steps
    assert _tasks_finished_on(status["dask_scheduler_address"]) > finished_before

    auth = CREDENTIALS["PREFECT_API_AUTH_STRING"]
    runs = _json(f"{status['prefect_api_url']}/flow_runs/filter", auth, {"flows": {"name": {"any_": ["training"]}}})
    assert [run["state_type"] for run in runs] == ["COMPLETED"]
    # A command's flow run sends no heartbeats (their thread made every command wait up to a second at
    # its end). The run's first heartbeat would be sent as it starts, so once its Completed event is
    # stored, a heartbeat would be too.
    names = _flow_run_events(status["prefect_api_url"], auth, runs[0]["id"], until="prefect.flow-run.Completed")
    assert "prefect.flow-run.Running" in names and "prefect.flow-run.heartbeat" not in names, names
    mlflow_auth = f"{CREDENTIALS['MLFLOW_TRACKING_USERNAME']}:{CREDENTIALS['MLFLOW_TRACKING_PASSWORD']}"
    model = _json(f"{status['mlflow_tracking_uri']}/api/2.0/mlflow/registered-models/get?name=up-model", mlflow_auth)
    assert model["registered_model"]["latest_versions"][0]["version"] == "1"
    assert status["mlflow_tracking_uri"] in stdout  # the summary links the run on that server


def _command_server_log(workspace: Workspace) -> str:
    return (Path(workspace.environment["MLPIPE_HOME"]) / "servers" / "commands.log").read_text()


def _wait_for(predicate: Callable[[], bool], seconds: float = 60) -> bool:
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_a_command_runs_in_the_command_server_with_the_callers_directory_terminal_and_exit_status(
    workspace: Workspace,
):
    socket_path = Path(workspace.environment["MLPIPE_HOME"]) / "servers" / "commands.sock"
    assert stat.S_IMODE(socket_path.stat().st_mode) == 0o600  # only this user's commands reach it
    assert _wait_for(lambda: "listening on" in _command_server_log(workspace), 120)
    before = _command_server_log(workspace).count("exited")

    # a client that sends anything else is turned away, and the server goes on
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stranger:
        stranger.connect(str(socket_path))
        stranger.sendall(b"\x00\x00\x00\x05hello")
        with contextlib.suppress(ConnectionResetError):  # closed with "hello" unread: a reset
            assert stranger.recv(1) == b""
    # the caller's working directory: a relative path is written there
    written = workspace.mlpipe("generate", "relative.csv", "--rows", "50")
    assert written.returncode == 0, written.stderr
    assert len((workspace.folder / "relative.csv").read_text().splitlines()) == 51
    # the caller's exit status and stderr
    failed = workspace.mlpipe("train", "--data", "missing.csv", "--target", "default", "--name", "nothing")
    assert failed.returncode == 1
    assert "missing.csv: file not found" in failed.stderr and "Traceback" not in failed.stderr
    # the caller's options: Prefect's own log lines come back with --verbose (its logging is set up again)
    assert "Beginning flow run" not in failed.stderr
    verbose = workspace.mlpipe("--verbose", "train", "--data", "missing.csv", "--target", "default", "--name", "x")
    assert verbose.returncode == 1 and "Beginning flow run" in verbose.stderr

    lines = _command_server_log(workspace).rstrip().splitlines()
    assert sum("exited" in line for line in lines) == before + 3
    assert re.search(r"generate \(pid \d+\) exited 0 after", lines[-5])
    assert re.search(r"train \(pid \d+\) exited 1 after", lines[-3])
    assert re.search(r"train \(pid \d+\) exited 1 after", lines[-1])


def test_without_the_command_server_a_command_runs_in_its_own_process(workspace: Workspace):
    before = _command_server_log(workspace).count("exited")
    result = subprocess.run(
        [MLPIPE, "train", "--data", "missing.csv", "--target", "default", "--name", "nothing"],
        env={**workspace.environment, "MLPIPE_COMMAND_SERVER": "off"},
        cwd=workspace.folder,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "missing.csv: file not found" in result.stderr
    assert _command_server_log(workspace).count("exited") == before


def _command_under_way(
    workspace: Workspace, name: str, seed: int, stderr: int
) -> tuple["subprocess.Popen[str]", psutil.Process]:
    """A sweep long enough to be running when the test signals it (AutoML, 200 trials), and the server's child
    that runs it."""
    data = workspace.folder / f"{name}.csv"
    credit_default(rows=20_000, seed=seed).to_csv(data, index=False)
    before = _command_server_log(workspace).count("started")
    command = [MLPIPE, "sweep", "--data", str(data), "--target", "default", "--name", name]
    command += ["--space", "auto", "--max-trials", "200"]
    client = subprocess.Popen(command, env=workspace.environment, cwd=workspace.folder, stderr=stderr, text=True)
    assert _wait_for(lambda: _command_server_log(workspace).count("started") > before)
    started = [line for line in _command_server_log(workspace).splitlines() if "started" in line][-1]
    child = psutil.Process(int(started.rsplit("(pid ", 1)[1].split(")")[0]))  # the last line may be an earlier exit
    time.sleep(3)
    assert child.is_running() and child.status() != psutil.STATUS_ZOMBIE, "the command ended before it was signalled"
    return client, child


def _ended(child: psutil.Process, seconds: float) -> bool:
    return _wait_for(lambda: not child.is_running() or child.status() == psutil.STATUS_ZOMBIE, seconds)


def test_ctrl_c_stops_the_command_the_server_runs(workspace: Workspace):
    client, child = _command_under_way(workspace, "stopped", 5, subprocess.PIPE)
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=60)
    assert client.returncode != 0, stderr[-2000:]
    assert _ended(child, 30)
    assert f"(pid {child.pid}) exited" in _command_server_log(workspace)


def test_ctrl_z_stops_the_command_the_server_runs_and_fg_continues_it(workspace: Workspace):
    """The shell stops only its foreground process (the client) on Ctrl-Z: the command ran on, printing into
    a terminal whose user had put it in the background."""
    client, child = _command_under_way(workspace, "paused", 6, subprocess.PIPE)
    try:
        client.send_signal(signal.SIGTSTP)
        assert _wait_for(lambda: child.status() == psutil.STATUS_STOPPED, 30), child.status()
        assert psutil.Process(client.pid).status() == psutil.STATUS_STOPPED  # as the shell expects of Ctrl-Z
        client.send_signal(signal.SIGCONT)  # `fg`
        assert _wait_for(lambda: child.status() != psutil.STATUS_STOPPED, 30)
        client.send_signal(signal.SIGTSTP)
        assert _wait_for(lambda: child.status() == psutil.STATUS_STOPPED, 30)
        client.send_signal(signal.SIGCONT)
        client.send_signal(signal.SIGINT)
        _, stderr = client.communicate(timeout=60)
        assert client.returncode != 0, stderr[-2000:]
    finally:
        client.kill()
    assert _ended(child, 30)


def test_a_command_whose_caller_was_killed_is_stopped(workspace: Workspace):
    client, child = _command_under_way(workspace, "orphan", 7, subprocess.DEVNULL)
    client.kill()
    client.wait()
    assert _wait_for(lambda: f"(pid {child.pid}) exited" in _command_server_log(workspace), 60)


def test_a_stopped_command_whose_caller_was_killed_still_ends(workspace: Workspace):
    """The server ends a command whose client is gone; a stopped one (Ctrl-Z) acts on that only once continued."""
    client, child = _command_under_way(workspace, "orphaned", 8, subprocess.DEVNULL)
    client.send_signal(signal.SIGTSTP)
    assert _wait_for(lambda: child.status() == psutil.STATUS_STOPPED, 30)
    client.kill()
    client.wait()
    assert _ended(child, 60)


def test_a_command_never_runs_code_older_than_what_is_installed(workspace: Workspace):
    """An edit (or an upgrade) after `mlpipe up`: commands run in their own process and say why."""
    import mlpipe.command_client as edited

    source = Path(edited.__file__)
    times = source.stat()
    before = _command_server_log(workspace).count("exited")
    try:
        os.utime(source, ns=(times.st_atime_ns, time.time_ns()))
        result = workspace.mlpipe("train", "--data", "missing.csv", "--target", "default", "--name", "nothing")
    finally:
        os.utime(source, ns=(times.st_atime_ns, times.st_mtime_ns))
    assert result.returncode == 1 and "missing.csv" in result.stderr
    assert "runs older mlpipe code" in result.stderr
    assert _command_server_log(workspace).count("exited") == before


def test_down_leaves_no_process_and_no_listening_port(workspace: Workspace):
    tree = []
    for component in workspace.status["components"].values():
        process = psutil.Process(component["pid"])
        tree += [process, *process.children(recursive=True)]
    addresses = [
        workspace.status["prefect_api_url"].split("/")[2],
        workspace.status["mlflow_tracking_uri"].split("/")[2],
        workspace.status["dask_scheduler_address"].removeprefix("tcp://"),
        workspace.status["dask_dashboard_url"].split("/")[2],
    ]
    result = workspace.mlpipe("down", timeout=120)
    assert result.returncode == 0, result.stderr
    assert "Stopped: prefect, mlflow, dask-scheduler, dask-workers, commands, worker." in result.stdout
    left = [p for p in tree if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]
    assert not left, [p.cmdline() for p in left]
    assert not [address for address in addresses if accepts_connections(address)]
    assert workspace.current_status()["running"] is False
    assert workspace.mlpipe("down").stdout.strip() == "Nothing was running."
