"""Where a local workspace lives: `MLPIPE_HOME`, or `./.mlpipe` by default."""

import os
from pathlib import Path


def workspace_home() -> Path:
    """The absolute workspace directory, created on first use."""
    home = Path(os.environ.get("MLPIPE_HOME", ".mlpipe")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home
