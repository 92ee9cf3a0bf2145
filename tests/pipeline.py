"""Helpers for tests that run the training flow and inspect what Prefect and MLflow recorded."""

import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId
from prefect.client.schemas.objects import TaskRun
from prefect.settings import PREFECT_API_URL

from mlpipe.blocks import Datastore, WorkspaceConfig
from mlpipe.flows.training import TrainingParams, TrainingSummary, training
from mlpipe.tasks.data.ingest import ingest
from mlpipe.tasks.datasets import DatasetRef
from mlpipe.tasks.events import model_resource_id

DATA_TASKS = ("ingest", "validate", "split")
MLPIPE = str(Path(sys.executable).parent / "mlpipe")


def cli_environment(cwd: Path) -> dict[str, str]:
    """The session's Prefect API and a workspace of the command's own."""
    return {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value(), "MLPIPE_HOME": str(cwd / ".mlpipe")}


def run_cli(*args: str, cwd: Path, extra_env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run `mlpipe` as a user does: a separate process (`extra_env`, e.g. the session's MLflow)."""
    env = {**cli_environment(cwd), **(extra_env or {})}
    return subprocess.run([MLPIPE, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


@dataclass
class FlowOutcome:
    summary: TrainingSummary | None
    error: BaseException | None
    task_states: dict[str, str]
    seconds: float
    task_runs: list[str]
    """Every task run's name, e.g. `check-part-57d`, sorted."""


class FinishedTaskRuns(logging.Handler):
    """Counts the task runs that ended in this process: Prefect logs one "Finished in state" line for each."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += record.getMessage().startswith("Finished in state")


def run_training(workspace: WorkspaceConfig, **params: Any) -> FlowOutcome:
    """Run the flow; return its summary (or error) and the final state name of each task."""
    params.setdefault("model", {"params": {"n_estimators": 40}})
    finished, logger = FinishedTaskRuns(), logging.getLogger("prefect.task_runs")
    logger.addHandler(finished)
    started = time.perf_counter()
    try:
        state = training(TrainingParams(**params), workspace, return_state=True)
    finally:
        logger.removeHandler(finished)
    seconds = time.perf_counter() - started
    summary, error = None, None
    try:
        summary = state.result()
    except BaseException as raised:  # noqa: BLE001 - the test inspects it
        error = raised
    # The server records each task run from its events, a moment later: wait for the ones that ran here.
    runs = task_runs(state.state_details.flow_run_id, expected=finished.count)
    states = {run.name.rsplit("-", 1)[0]: run.state.name for run in runs if run.state is not None}
    return FlowOutcome(summary, error, states, seconds, sorted(run.name for run in runs))


def task_states(flow_run_id: Any) -> dict[str, str]:
    """Task name (without Prefect's suffix) → final state name, e.g. {'ingest': 'Cached'}."""
    return {run.name.rsplit("-", 1)[0]: run.state.name for run in task_runs(flow_run_id) if run.state is not None}


def task_runs(flow_run_id: Any, expected: int = 0, settle_seconds: float = 10.0) -> list[TaskRun]:
    """The flow run's task runs, once the server shows at least `expected` of them and each in a final state
    (after `settle_seconds`, as they are).

    The server records a task run's states from the events its engine sends, a moment after the
    flow itself returns: read at once, the last steps can still show Pending or Running, or be missing.
    """
    deadline = time.monotonic() + settle_seconds
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
        settled = len(runs) >= expected and all(run.state is not None and run.state.is_final() for run in runs)
        if settled or time.monotonic() > deadline:
            return runs
        time.sleep(0.1)


def ingest_frame(frame: pd.DataFrame, path: Path, store: Datastore) -> DatasetRef:
    """Write `frame` as Parquet at `path` and ingest it (the plain function, no flow)."""
    frame.to_parquet(path, index=False)
    return ingest(str(path), store)


def wait_for(condition: object, seconds: float, what: str) -> None:
    """Poll `condition` every 0.1 s; fail naming `what` after `seconds`."""
    deadline = time.monotonic() + seconds
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def leftovers(store: Datastore) -> list[str]:
    """The files in the datastore's snapshot folder: what a failed run must not add to."""
    folder = Path(store.url or "") / "datasets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def model_versions(workspace: WorkspaceConfig, name: str) -> list[Any]:
    client = workspace.resolve().mlflow.client()
    return sorted(client.search_model_versions(f"name = '{name}'"), key=lambda v: int(v.version))


def run_sweep(workspace: WorkspaceConfig, **params: Any) -> "SweepOutcome":
    """Run the sweep flow on the demo columns; return its summary or error."""
    from mlpipe.flows.sweep import SweepParams, sweep

    params.setdefault("exclude", ["application_id"])
    params.setdefault("time_column", "applied_at")
    state = sweep(SweepParams(target="default", **params), workspace, return_state=True)
    try:
        return SweepOutcome(state.result(), None)
    except BaseException as raised:  # noqa: BLE001 - the test inspects it
        return SweepOutcome(None, raised)


@dataclass
class SweepOutcome:
    summary: Any
    error: BaseException | None


def study_trials(workspace: WorkspaceConfig, study: str) -> list[Any]:
    """The study's trials as optuna recorded them, from the workspace's study storage."""
    import optuna

    storage = workspace.resolve().studies.open()
    return optuna.load_study(study_name=study, storage=storage).get_trials(deepcopy=False)


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one moment."""
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    open_now = peak = 0
    for _, change in events:
        open_now += change
        peak = max(peak, open_now)
    return peak


def model_events(model: str, event: str, version: str, wait: float = 30.0) -> list[Any]:
    """Events named `event` about a model version, waiting for them to reach the API (sent in the background)."""
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    resource = EventResourceFilter(id=[model_resource_id(model)], labels={"mlpipe.model.version": version})
    deadline = time.monotonic() + wait
    while True:
        with get_client(sync_client=True) as client:
            page = client.read_events(EventFilter(event=EventNameFilter(name=[event]), resource=resource), limit=50)
        if page.events or time.monotonic() > deadline:
            return list(page.events)
        time.sleep(0.5)


def loans_by_sex(rows: int, seed: int, biased: bool) -> pd.DataFrame:
    """`skill` decides approval; biased, being a man does too, and `height` gives a man away without `sex` itself."""
    rng = np.random.default_rng(seed)
    men = rng.random(rows) < 0.5
    frame = pd.DataFrame(
        {
            "sex": np.where(men, "M", "F"),
            "height": 164 + 14 * men + rng.normal(0, 4, rows),
            "skill": rng.normal(0, 1, rows),
            "noise": rng.normal(0, 1, rows),
        }
    )
    favour = 2.5 * men if biased else 0.0
    frame["approved"] = (frame["skill"] + favour + rng.normal(0, 0.3, rows) > 1.0).astype("int64")
    return frame
