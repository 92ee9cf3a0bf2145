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


LINEAGE_KEYS = ("mlpipe.code_version", "mlpipe.prefect_flow_run_id")
SWEEP_KEYS = ("mlpipe.sweep_run_id", "mlpipe.sweep_study", "mlpipe.sweep_trial")
"""Tags on a training run that a sweep chose, copied onto its model version as a link back."""


def lineage_tags() -> dict[str, str]:
    """Tags that say which code and which Prefect flow run produced something."""
    from prefect.runtime import flow_run

    return dict(zip(LINEAGE_KEYS, (code_version(), str(flow_run.get_id() or "")), strict=True))
