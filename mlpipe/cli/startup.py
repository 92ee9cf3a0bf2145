"""What a flow command does before its flow runs: start the Prefect API early, and set up what the terminal shows.

With no `PREFECT_API_URL` (no running workspace), Prefect starts a temporary API server, a
process of its own, on the flow's first call: after this process has imported the pipeline's
libraries, so the two waits add up. Started here as the command begins, the server boots on
another core while this process imports. It is Prefect's own temporary server, the very object
Prefect's client would have started (one per process), so Prefect stops it when the command
exits, as it always did: nothing outlives the command.

Libraries announce their own steps (Prefect's line per task run, MLflow's "Successfully
registered model"); a command shows one line per step of its own instead, on stderr, and
library warnings and errors. `mlpipe --verbose` shows the libraries' lines as they are.
"""

import importlib
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mlpipe.cli.output import err
from mlpipe.runtime import quiet_mlflow, verbose_output

if TYPE_CHECKING:
    from prefect.server.api.server import SubprocessASGIServer

PRELOADED = ("mlpipe.tasks.model.pyfunc", "mlpipe.tasks.model.preprocessing", "xgboost")
"""Modules every local training run's steps import (the champion's and the candidate's models unpickle them)."""


@contextmanager
def preparing_flow() -> Iterator[None]:
    """Import and configure inside the block while the temporary API starts; run the flow after it.

    On leaving the block the API is up (or its start failed: the flow's own attempt then reports
    Prefect's error as before), and the terminal shows mlpipe's progress lines.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_EPHEMERAL_ENABLED

    starter = None
    if not PREFECT_API_URL.value() and PREFECT_SERVER_EPHEMERAL_ENABLED.value():
        # Imported here, not in the thread: two threads importing Prefect's modules at once can deadlock.
        from prefect.server.api.server import SubprocessASGIServer

        starter = threading.Thread(target=_start, args=(SubprocessASGIServer(),), name="prefect-api", daemon=True)
        starter.start()
    try:
        yield
        if starter is not None:
            _preload_while(starter)
    finally:
        if starter is not None:
            starter.join()  # never leave a half-started server to a process that is exiting
    if not verbose_output():
        _show_progress()
        _quiet_libraries()


def _preload_while(starter: threading.Thread) -> None:
    """Import what a local run's steps load, while the temporary API still starts.

    With no Prefect server there is no `mlpipe up` workspace either, so the steps run in this
    process's threads (the default local cluster) and would import MLflow, scikit-learn and
    xgboost one after the other once the flow runs; waiting for the API, the import is free
    (with a cluster configured elsewhere, it only fills the wait).
    """
    for module in PRELOADED:
        if not starter.is_alive():
            return
        importlib.import_module(module)


def _start(server: "SubprocessASGIServer") -> None:
    """Start the server; one that fails to answer in time is stopped, so that the flow's own start is a fresh one.

    Prefect keeps a failed server's port and process slot: starting it again would launch a
    second process and lose the first, which would then outlive the command.
    """
    try:
        server.start()
    except Exception:  # noqa: BLE001 - the flow's own start raises it with Prefect's message
        server.stop()


class _StepProgress(logging.Handler):
    """One line per finished flow or task run: its name, how it ended, seconds since the flow began."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.started = time.monotonic()

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        flow_run = getattr(record, "flow_run_name", None)
        if message.startswith("Beginning flow run") and flow_run:
            self.started = time.monotonic()
            flow = getattr(record, "flow_name", None) or "flow"
            err.print(f"[bold]{flow}[/] (flow run '{flow_run}')", highlight=False, soft_wrap=True)
            return
        if not message.startswith("Finished in state "):
            return
        state = message.removeprefix("Finished in state ").partition("(")[0]
        shown = {"Completed": "done", "Cached": "cached, not run again"}.get(state, state.lower())
        name = getattr(record, "task_run_name", None)
        step = name.rpartition("-")[0] if name else f"flow run '{flow_run}'"
        elapsed = time.monotonic() - self.started
        colour = "red" if state in ("Failed", "Crashed") else "green" if name is None else "default"
        err.print(f"  {elapsed:6.1f} s  {step}: [{colour}]{shown}[/]", highlight=False, soft_wrap=True)


def _show_progress() -> None:
    """Follow the flow's run loggers (Prefect hides their INFO lines on the terminal unless `--verbose`)."""
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")]
    if any(isinstance(handler, _StepProgress) for logger in loggers for handler in logger.handlers):
        return
    progress = _StepProgress()  # one clock for the flow and its steps
    for logger in loggers:
        logger.addHandler(progress)


def _quiet_libraries() -> None:
    """Optuna's and MLflow's announcements off (MLflow's also when a step imports it later, see
    `quiet_mlflow`); their warnings and errors still shown."""
    import sys

    if "optuna" in sys.modules:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # "Trial 3 finished with value…"
    if "mlflow" in sys.modules:
        quiet_mlflow()
