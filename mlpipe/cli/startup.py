"""What a flow command does before its flow runs: start the Prefect API early, and set up what the terminal shows.

With no `PREFECT_API_URL` (no running workspace), a temporary Prefect API serves the command
(`mlpipe/cli/temporary_api.py`). Started as the command begins, before Prefect is even imported,
the server boots on another core while this process imports; the command stops it on exit, so
nothing outlives the command.

Libraries announce their own steps (Prefect's line per task run, MLflow's "Successfully
registered model"); a command shows one line per step of its own instead, on stderr, and
library warnings and errors. `mlpipe --verbose` shows the libraries' lines as they are.
"""

import atexit
import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

from mlpipe.cli.output import err
from mlpipe.cli.temporary_api import TemporaryApi
from mlpipe.flows import step_reports
from mlpipe.runtime import prefect_setting, preload_in_background, quiet_mlflow, verbose_output

PRELOADED = (
    "mlflow.store.tracking.sqlalchemy_store",
    "mlpipe.tasks.model.pyfunc",
    "mlflow.tracing.processor.base_mlflow",
    "mlpipe.tasks.model.preprocessing",
    "xgboost",
)
"""Modules every local training run's steps import, cached re-runs included, in the order they need them:
MLflow's store on SQLite (the embedded default; the first step reads the champion), the models'
own classes (the champion's and the candidate's models unpickle them) and MLflow's tracing, which
every switch of tracking URI loads."""


@contextmanager
def preparing_flow() -> Iterator[None]:
    """Import and configure inside the block while the temporary API starts; run the flow after it.

    On leaving the block the API answers (or `TemporaryApiFailed` says why not), and the
    terminal shows mlpipe's progress lines.
    """
    api = TemporaryApi.start() if TemporaryApi.needed() else None
    yield
    if api is not None:
        _preload_in_background()
        api.wait()
    _no_heartbeats()
    if not verbose_output():
        _show_progress()
        _quiet_libraries()


def _no_heartbeats() -> None:
    """The command's own flow run sends no heartbeats, unless the user's settings ask for them.

    They matter for runs nobody watches: deployment runs (started by `mlpipe worker`, which keeps
    Prefect's setting) are marked Crashed by the worker when their process dies; a command's user
    sees it end, and its process does not end with a thread that may be sending one.
    """
    if prefect_setting("PREFECT_FLOWS_HEARTBEAT_FREQUENCY") or prefect_setting("PREFECT_RUNNER_HEARTBEAT_FREQUENCY"):
        return
    from prefect.settings import get_current_settings

    get_current_settings().flows.heartbeat_frequency = None


def _preload_in_background() -> None:
    """Import what a local run's steps load, in a thread of its own, while the temporary API starts and after.

    With no Prefect server there is no `mlpipe up` workspace either, so the steps run in this
    process's threads (the default local cluster) and would import MLflow, scikit-learn and
    xgboost one after the other as the flow runs. Imported in the background from the moment the
    command's own imports are done, they cost the wait for the API and then only what the flow's
    first steps leave of the processor: the flow starts as soon as the API answers. The process
    waits for the thread at exit, so it never ends inside an import.
    """
    atexit.register(preload_in_background(PRELOADED).join)


class _StepProgress(logging.Handler):
    """One line per finished flow or task run: its name, how it ended, seconds since the flow began.

    Steps that ran in this process end in Prefect's records; those that ran on worker processes
    in `step_reports`' (see `mlpipe.flows.step_reports`).
    """

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.started = time.monotonic()

    def handle(self, record: logging.LogRecord) -> bool:
        if _ends_the_flow(record):  # waited for outside the handler's lock, which the steps' lines take
            step_reports.wait_until_told(timeout=5.0)
        return super().handle(record)

    def emit(self, record: logging.LogRecord) -> None:
        if record.name == step_reports.LOGGER.name:
            self._show(str(getattr(record, "step", "")), str(getattr(record, "state", "")))
            return
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
        name = getattr(record, "task_run_name", None)
        self._show(name.rpartition("-")[0] if name else f"flow run '{flow_run}'", state, flow=name is None)

    def _show(self, step: str, state: str, flow: bool = False) -> None:
        shown = {"Completed": "done", "Cached": "cached, not run again"}.get(state, state.lower())
        elapsed = time.monotonic() - self.started
        colour = "red" if state in ("Failed", "Crashed") else "green" if flow else "default"
        err.print(f"  {elapsed:6.1f} s  {step}: [{colour}]{shown}[/]", highlight=False, soft_wrap=True)


def _ends_the_flow(record: logging.LogRecord) -> bool:
    return record.name == "prefect.flow_runs" and record.getMessage().startswith("Finished in state ")


def _show_progress() -> None:
    """Follow the flow's run loggers (Prefect hides their INFO lines on the terminal unless `--verbose`)."""
    loggers = [logging.getLogger(name) for name in ("prefect.flow_runs", "prefect.task_runs")] + [step_reports.LOGGER]
    if any(isinstance(handler, _StepProgress) for logger in loggers for handler in logger.handlers):
        return
    progress = _StepProgress()  # one clock for the flow and its steps
    for logger in loggers:
        logger.addHandler(progress)


def _quiet_libraries() -> None:
    """Optuna's and MLflow's announcements off (MLflow's also when a step imports it later, see
    `quiet_mlflow`); their warnings and errors still shown. mlpipe's own errors are not repeated."""
    import sys

    from prefect.logging.handlers import PrefectConsoleHandler

    for handler in logging.getLogger().handlers:  # Prefect's terminal handler is the root logger's
        if isinstance(handler, PrefectConsoleHandler):
            handler.addFilter(_ReportedByTheCommand())
            handler.addFilter(_DrainingAtExit())

    if "optuna" in sys.modules:
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)  # "Trial 3 finished with value…"
    if "mlflow" in sys.modules:
        quiet_mlflow()


class _ReportedByTheCommand(logging.Filter):
    """Keeps Prefect's report of a run that failed with an mlpipe error off the terminal.

    Prefect logs a failed step's or flow's exception with its traceback. mlpipe's own errors (bad
    input, a wrong setting) name the file, column or field, and the command prints them as one
    line; their traceback is noise there. Prefect's API still receives the records (the UI shows
    them), and any other exception is still shown with its traceback.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        from mlpipe.errors import MlpipeError

        if not record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return True
        if record.exc_info and isinstance(record.exc_info[1], MlpipeError):
            return False
        failed_with = re.search(r"encountered an exception (\w+):", record.getMessage())
        return not (failed_with and failed_with.group(1) in _names_of_subclasses(MlpipeError))


class _DrainingAtExit(logging.Filter):
    """Keeps Prefect's note that it is still sending its last events and logs at exit off the terminal.

    The note says only that the process is finishing its work with the API: the items are sent.
    A service that fails to send them still warns.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Still processing items:")


def _names_of_subclasses(cls: type) -> set[str]:
    subclasses: list[type] = cls.__subclasses__()
    return {cls.__name__}.union(*(_names_of_subclasses(subclass) for subclass in subclasses))
