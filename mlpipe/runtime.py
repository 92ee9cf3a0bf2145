"""Process settings for the CLI, applied before Prefect is imported (Prefect reads them once)."""

import os

from mlpipe.redaction import install_log_redaction
from mlpipe.workspace import workspace_home

DEFAULTS = {
    # A fresh Prefect home can take longer than Prefect's 20 s default to start its temporary API.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
    # No telemetry calls from machines without internet access.
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "true",
    "MLFLOW_ENABLE_TELEMETRY": "false",
    # Dask's own INFO lines drown the pipeline's; warnings still show.
    "DASK_LOGGING__DISTRIBUTED": "warning",
    "GIT_PYTHON_REFRESH": "quiet",
}


def configure_process() -> None:
    """Set defaults the user has not set, and keep Prefect's cached results in the workspace.

    Results live beside the MLflow store they refer to, so deleting a workspace also forgets
    the cache entries that point into it. Worker processes inherit these variables. Log records
    are redacted (URI passwords and query strings) before any handler sees them.
    """
    install_log_redaction()
    for name, value in DEFAULTS.items():
        os.environ.setdefault(name, value)
    os.environ.setdefault("PREFECT_RESULTS_LOCAL_STORAGE_PATH", str(workspace_home() / "prefect-results"))
