"""Process settings for the CLI, applied before Prefect is imported (Prefect reads them once)."""

import importlib
import logging
import os
import threading
import tomllib
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path

from mlpipe.redaction import install_log_redaction
from mlpipe.workspace import running_servers, workspace_home

DEFAULTS = {
    # A fresh Prefect home (or a busy machine: the API now starts while the command imports) can take
    # longer than Prefect's 20 s default to start its temporary API.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
    # No telemetry calls from machines without internet access.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    # Dask's own INFO lines drown the pipeline's; warnings still show.
    "DASK_LOGGING__DISTRIBUTED": "warning",
    # Each Dask worker samples every thread's stack 100 times a second for its dashboard's Profile
    # page, taking the GIL from the task each time: sweep trials ran 4 % longer on workers that did.
    "DASK_DISTRIBUTED__WORKER__PROFILE__ENABLED": "false",
    # The Prefect servers mlpipe starts (`mlpipe up`'s, a command's temporary API) store the events they
    # receive every 0.5 s rather than every 5 s: a drift or performance check reads its alarm back from
    # the API before it returns, and waited for that store (a drift check on 3,000 rows: 5.0 s → 2.3 s).
    "PREFECT_SERVER_SERVICES_EVENT_PERSISTER_FLUSH_INTERVAL": "0.5",
    "GIT_PYTHON_REFRESH": "quiet",
}


QUIET = {
    # Libraries' INFO lines (Prefect's line per task run, MLflow's database set-up, great-expectations'
    # temporary folders) are not a command's output: it prints its own progress. Warnings still show.
    "PREFECT_LOGGING_HANDLERS_CONSOLE_LEVEL": "WARNING",
    "MLFLOW_LOGGING_LEVEL": "WARNING",
    # MLflow draws a progress bar for every artifact download (a champion's contract is one).
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}
VERBOSE = "MLPIPE_VERBOSE"
"""Set to 1 (`mlpipe --verbose`): libraries log to the terminal as they do on their own."""
QUIETED = "MLPIPE_QUIET_LIBRARIES"
"""Set to 1 by a command that is not `--verbose`: what MLflow announces stays off the terminal."""
LIBRARY_NOISE = ("serialized using CloudPickle",)
"""Warnings a library gives on every run about what mlpipe does on purpose (models are logged as
Python objects; DESIGN.md says what that means for trust), shown only with `--verbose`."""
_MLFLOW_QUIETED = threading.Lock()


def verbose_output() -> bool:
    """Whether library logs go to the terminal unfiltered (`mlpipe --verbose`)."""
    return os.environ.get(VERBOSE) == "1"


def configure_process(verbose: bool = False) -> dict[str, str]:
    """Set defaults the user has not set, and keep Prefect's cached results in the workspace.

    Results live beside the MLflow store they refer to, so deleting a workspace also forgets
    the cache entries that point into it. Unless `verbose`, libraries' INFO lines stay off the
    terminal. Worker processes inherit these variables. Log records are redacted (URI passwords
    and query strings) before any handler sees them.

    When `mlpipe up` runs this workspace's servers, they become the defaults: no temporary
    Prefect API, runs visible in the UI at once. Returns the variables taken from them, so the
    command can say so.
    """
    install_log_redaction()
    if verbose:
        os.environ[VERBOSE] = "1"
        os.environ.pop(QUIETED, None)
        for name, value in QUIET.items():  # inherited from a quiet parent process
            if os.environ.get(name) == value:
                del os.environ[name]
    if not verbose_output():
        for name, value in QUIET.items():
            os.environ.setdefault(name, value)
        os.environ[QUIETED] = "1"
        # A busy port is expected on a shared machine: Dask picks another one and says which in the run's log.
        warnings.filterwarnings("ignore", message=r"Port \d+ is already in use")
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(workspace_home() / "prefect-results"))
    used = use_running_servers()
    if _environment_at_import is not None:
        _read_library_settings_again(_environment_at_import)
    return used


def use_running_servers() -> dict[str, str]:
    """Point this process at the servers `mlpipe up` runs, where the user's own settings leave it free.

    Each variable the user set (`PREFECT_API_URL`, `MLFLOW_TRACKING_URI`, `DASK_SCHEDULER_ADDRESS`)
    wins, so do the active Prefect profile's settings and a config file's block that names a
    server. The workspace's Dask workers report to its Prefect server, so its scheduler is used
    only by a process that reports there too. `MLPIPE_SERVERS=off` keeps the embedded defaults.
    Returns the variables it set.
    """
    servers = None if os.environ.get("MLPIPE_SERVERS", "").lower() == "off" else running_servers()
    if servers is None:
        return {}
    own = {**_prefect_profile(), **os.environ}
    chosen = {name: value for name, value in servers.client_environment().items() if name not in own}
    if own.get("PREFECT_API_URL", servers.prefect_api_url) != servers.prefect_api_url:
        chosen.pop("DASK_SCHEDULER_ADDRESS", None)
    os.environ.update(chosen)
    return chosen


def prefect_setting(name: str) -> str | None:
    """A Prefect setting as the user gave it (variable, then active profile), without importing Prefect."""
    return os.environ.get(name) or _prefect_profile().get(name)


def prefect_settings_named(prefixes: tuple[str, ...]) -> list[str]:
    """The Prefect settings the user gave (variables, active profile) whose names start with one of `prefixes`."""
    return sorted(name for name in {**_prefect_profile(), **os.environ} if name.startswith(prefixes))


def _prefect_profile() -> dict[str, str]:
    """The settings of the active Prefect profile (read as a file: importing Prefect takes seconds)."""
    home = Path(os.environ.get("PREFECT_HOME", "~/.prefect")).expanduser()
    path = Path(os.environ.get("PREFECT_PROFILES_PATH", home / "profiles.toml")).expanduser()
    try:
        profiles = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError):
        return {}
    active = os.environ.get("PREFECT_PROFILE") or profiles.get("active", "ephemeral")
    settings = profiles.get("profiles", {}).get(active, {})
    return {str(name): str(value) for name, value in settings.items()} if isinstance(settings, dict) else {}


class _Noise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(text in record.getMessage() for text in LIBRARY_NOISE)


def quiet_mlflow() -> None:
    """In a command that is not `--verbose`, keep MLflow's announcements off the terminal; its warnings and
    errors still show, but for `LIBRARY_NOISE`.

    MLflow is imported only by the steps that use it, often after the command set up its output,
    so the MLflow connection calls this before each use; it acts once per process. MLflow prints
    some lines itself ("Successfully registered model") through a stream that only its own switch
    silences, and logs others through the handler it attaches on import.
    """
    if os.environ.get(QUIETED) != "1":
        return
    import mlflow
    from mlflow.utils import logging_utils

    with _MLFLOW_QUIETED:
        logging_utils.disable_logging()
        logger = logging.getLogger(mlflow.__name__)
        if any(isinstance(f, _Noise) for h in logger.handlers for f in h.filters):
            return
        handler = logging.StreamHandler()
        handler.setLevel(logging.WARNING)
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        handler.addFilter(_Noise())
        logger.addHandler(handler)


_environment_at_import: dict[str, str] | None = None


def settings_read_before_configured(environment: Mapping[str, str]) -> None:
    """Say that Prefect and Dask were imported before `configure_process`, under `environment`:
    it then has them read their settings again.

    Both read their settings once, on import. The workspace's command server imports them before
    it knows a command's environment; its child for a command calls this before running it.
    """
    global _environment_at_import
    _environment_at_import = dict(environment)


def _read_library_settings_again(imported_under: Mapping[str, str]) -> None:
    """Prefect's settings (variables, profile, the folder's `prefect.toml` and `.env`), its logging
    when that changed (setting it up again costs 0.1 s), and Dask's configuration."""
    from dask.config import refresh
    from prefect.context import refresh_global_settings_context
    from prefect.logging.configuration import setup_logging
    from prefect.settings import get_current_settings

    logging_before = get_current_settings().logging
    refresh_global_settings_context()
    variables = {name for name in {*imported_under, *os.environ} if name.startswith("PREFECT_LOGGING_")}
    logging_variables_changed = any(imported_under.get(name) != os.environ.get(name) for name in variables)
    if logging_variables_changed or get_current_settings().logging != logging_before:
        setup_logging(incremental=False)
    refresh()


def preload_in_background(modules: Sequence[str]) -> threading.Thread:
    """Import `modules` in a daemon thread, in order, so that whoever needs one later finds it loaded.

    Python's import lock makes a thread that needs a module still being imported wait for that
    import instead of repeating it. A module that fails to import is left for the code that needs
    it, which fails with the real error.
    """

    def import_all() -> None:
        for module in modules:
            try:
                importlib.import_module(module)
            except Exception:
                logging.getLogger(__name__).debug("could not preload %s", module, exc_info=True)

    thread = threading.Thread(target=import_all, name="mlpipe-preload", daemon=True)
    thread.start()
    return thread
