"""What a run records about where it came from: code version and Prefect flow run."""

import subprocess
from functools import lru_cache
from pathlib import Path

from mlpipe import __version__


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the project checkout (`-dirty` when edited), else the package version."""
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=here, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return __version__
    return f"{commit}-dirty" if dirty else commit


def current_flow_run_id() -> str | None:
    """The Prefect flow run this code runs in, if any."""
    from prefect.runtime import flow_run

    run_id = flow_run.get_id()
    return str(run_id) if run_id else None
