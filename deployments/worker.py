"""`mlpipe worker`: Prefect's process worker, run as a child that is stopped in bounded time.

Prefect's worker turns SIGTERM into a KeyboardInterrupt and then waits, without a bound, for
its flow runs and for its shutdown to reach the API: when the server stops at the same moment
(`mlpipe down`, a compose or Kubernetes shutdown) it hangs in the cancellation observer's
teardown until a second signal. Its flow runs are processes of their own session, so killing
the worker alone would orphan them. This supervisor owns the stop instead:

1. SIGTERM (or SIGINT) asks the worker to stop polling; a flow run that ends within the grace
   period ends normally.
2. Then every flow run still going gets SIGTERM, which Prefect's engine turns into a Crashed state.
3. Then whatever is left of the worker's process tree is killed, and the runs it had are marked
   Crashed on the server if it still answers (not when it is already gone).
"""

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from uuid import UUID

import psutil

STOP_SECONDS = 8.0
"""The most a stop takes, inside the 10 s Docker and compose allow before they kill."""
_CRASH_SECONDS = 2.0
"""Out of STOP_SECONDS: how long flow runs have to record their crash before they are killed."""
_KILL_SECONDS = 0.5
"""Out of STOP_SECONDS: how long killed processes have to disappear."""
_API_SECONDS = 1.0
"""Out of STOP_SECONDS: how long marking killed runs as crashed may take."""
_STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def worker_command(pool: str, limit: int | None) -> list[str]:
    """The Prefect process worker serving `pool`."""
    command = [sys.executable, "-m", "prefect", "worker", "start", "--pool", pool, "--type", "process"]
    return command + (["--limit", str(limit)] if limit else [])


def supervise(command: list[str], stop_seconds: float = STOP_SECONDS) -> int:
    """Run the worker `command` until it exits or this process is asked to stop; its exit code.

    The worker runs in a session of its own, so a terminal's Ctrl-C reaches only this process,
    which then stops the worker as SIGTERM would.
    """
    stop = threading.Event()
    previous = {number: signal.signal(number, lambda *_: stop.set()) for number in _STOP_SIGNALS}
    try:
        worker = subprocess.Popen(command, start_new_session=True)
        tree = ProcessTree(worker.pid)
        while worker.poll() is None and not stop.wait(0.5):
            tree.refresh()
        if worker.poll() is not None:
            tree.kill_left_behind()
            return worker.returncode
        return stop_worker(worker, tree, stop_seconds)
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def stop_worker(worker: subprocess.Popen[bytes], tree: "ProcessTree", stop_seconds: float) -> int:
    """Stop the worker and its flow runs within `stop_seconds`: gently, then as crashes, then by force."""
    deadline = time.monotonic() + stop_seconds
    worker.send_signal(signal.SIGTERM)
    tree.wait_for(worker, until=deadline - _CRASH_SECONDS - _KILL_SECONDS - _API_SECONDS)
    for process in tree.flow_runs():
        _signal(process, signal.SIGTERM)
    tree.wait_for(worker, until=deadline - _KILL_SECONDS - _API_SECONDS)
    tree.kill_left_behind()
    worker.wait()
    mark_crashed(set(tree.run_ids.values()), timeout=max(0.1, deadline - time.monotonic()))
    return 0


class ProcessTree:
    """The worker and everything it started, remembered as they appear.

    A flow run's own children (Dask worker processes) are re-parented when the flow run dies,
    so they are collected while their parents live, not looked up at the end; so are the ids of
    the flow runs, so that a run whose process the worker took down on its way out is still known.
    """

    def __init__(self, root: int) -> None:
        self.root = psutil.Process(root)
        self.known: dict[int, psutil.Process] = {}
        self.run_ids: dict[psutil.Process, UUID] = {}

    def refresh(self) -> None:
        """Remember the descendants the worker has now, and which of them are flow runs."""
        with contextlib.suppress(psutil.NoSuchProcess):
            self._remember(self.root.children(recursive=True))
        for process in list(self.known.values()):
            with contextlib.suppress(psutil.NoSuchProcess):
                self._remember(process.children(recursive=True))

    def _remember(self, processes: list[psutil.Process]) -> None:
        for process in processes:
            if process.pid in self.known:
                continue
            self.known[process.pid] = process
            run_id = _run_id(process)
            if run_id and _run_id(_parent(process)) != run_id:  # a flow run's helpers inherit its id
                self.run_ids[process] = UUID(run_id)

    def alive(self) -> list[psutil.Process]:
        """Remembered descendants still running (the same processes, not reused ids)."""
        return [process for process in self.known.values() if _running(process)]

    def flow_runs(self) -> list[psutil.Process]:
        """The flow-run processes still running."""
        self.refresh()
        return [process for process in self.run_ids if _running(process)]

    def wait_for(self, worker: subprocess.Popen[bytes], until: float) -> None:
        """Until `until` or until the worker and all it started are gone."""
        while time.monotonic() < until:
            self.refresh()
            if worker.poll() is not None and not self.alive():
                return
            time.sleep(0.1)

    def kill_left_behind(self) -> None:
        """Kill the worker's process group and every descendant still running."""
        self.refresh()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.root.pid, signal.SIGKILL)
        for process in self.alive():
            _signal(process, signal.SIGKILL)
        psutil.wait_procs(self.alive(), timeout=_KILL_SECONDS)


def _run_id(process: psutil.Process | None) -> str | None:
    """The flow-run id Prefect passes a flow run's process in its environment (None for other processes)."""
    try:
        return process.environ().get("PREFECT__FLOW_RUN_ID") if process else None
    except psutil.Error:
        return None


def _running(process: psutil.Process) -> bool:
    """Alive and not a zombie (a killed process whose parent has not collected it yet)."""
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _parent(process: psutil.Process) -> psutil.Process | None:
    try:
        return process.parent()
    except psutil.Error:
        return None


def _signal(process: psutil.Process, number: int) -> None:
    with contextlib.suppress(psutil.NoSuchProcess):
        process.send_signal(number)


def mark_crashed(run_ids: set[UUID], timeout: float) -> None:
    """Mark runs whose process was killed as Crashed, within `timeout`, unless final already or the API is gone.

    A server that is shutting down can accept a connection and never answer, so the calls run in
    a thread the stop does not wait for beyond `timeout`.
    """
    if run_ids:
        marking = threading.Thread(target=_mark_crashed, args=(run_ids, timeout), daemon=True)
        marking.start()
        marking.join(timeout)


def _mark_crashed(run_ids: set[UUID], timeout: float) -> None:
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_CLIENT_MAX_RETRIES, temporary_settings
    from prefect.states import Crashed

    message = "The worker was stopped (SIGTERM) and this flow run's process was killed."
    with temporary_settings({PREFECT_CLIENT_MAX_RETRIES: 0}):
        try:
            with get_client(sync_client=True, httpx_settings={"timeout": timeout}) as client:
                for run_id in run_ids:
                    state = client.read_flow_run(run_id).state
                    if state is None or not state.is_final():
                        client.set_flow_run_state(run_id, Crashed(message=message))
        except (httpx.HTTPError, OSError, RuntimeError):  # the server stopped too: nothing can record the crash
            return
