"""A flow that stays busy, with a child process of its own (as a flow's Dask workers are), for worker-stop tests."""

import os
import subprocess
import sys
import time
from pathlib import Path

from prefect import flow


@flow(name="sleeper")
def sleeper(folder: str, seconds: float) -> None:
    """Write this process's id and its child's to `folder`, then sleep `seconds`."""
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    Path(folder, "pids").write_text(f"{os.getpid()} {child.pid}")
    time.sleep(seconds)
    child.terminate()
