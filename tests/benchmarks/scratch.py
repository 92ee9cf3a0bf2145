"""A benchmark's own workspace: fresh MLPIPE_HOME and PREFECT_HOME, and no shared services from the shell."""

import os
import tempfile
from pathlib import Path

SHARED = ("PREFECT_API_URL", "MLFLOW_TRACKING_URI", "DASK_SCHEDULER_ADDRESS", "MLPIPE_STUDY_STORAGE")


def scratch_workspace(name: str, quiet: bool = True) -> Path:
    """A temporary folder holding the workspace; call before importing Prefect (it reads these at import)."""
    scratch = Path(tempfile.mkdtemp(prefix=f"mlpipe-bench-{name}-"))
    os.environ.update({"MLPIPE_HOME": str(scratch / "workspace"), "PREFECT_HOME": str(scratch / "prefect")})
    if quiet:
        os.environ["PREFECT_LOGGING_LEVEL"] = "WARNING"
    for variable in SHARED:
        os.environ.pop(variable, None)
    return scratch
