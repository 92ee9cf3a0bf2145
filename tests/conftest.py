"""Shared fixtures: one Prefect API and one workspace per test session, real components only."""

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

# Settings Prefect reads once at import: a private home, a patient temporary server, no telemetry.
_SESSION_DIR = Path(tempfile.mkdtemp(prefix="mlpipe-tests-"))
os.environ["PREFECT_HOME"] = str(_SESSION_DIR / "prefect")
os.environ["MLPIPE_HOME"] = str(_SESSION_DIR / "workspace")
os.environ.pop("PREFECT_API_URL", None)
os.environ.pop("MLFLOW_TRACKING_URI", None)
os.environ.pop("MLFLOW_REGISTRY_URI", None)
os.environ.pop("DASK_SCHEDULER_ADDRESS", None)

from mlpipe.runtime import configure_process  # noqa: E402

configure_process()

import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from prefect.testing.utilities import prefect_test_harness  # noqa: E402

from blocks import Datastore, WorkspaceConfig  # noqa: E402
from mlpipe.demo_data import credit_default  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def prefect_api() -> Iterator[None]:
    """A temporary Prefect server with its own database, started once for the session."""
    with prefect_test_harness(server_startup_timeout=120):
        yield
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)  # workspace, Prefect home and test data


@pytest.fixture(scope="session")
def workspace() -> WorkspaceConfig:
    """The local defaults: SQLite MLflow, datastore under MLPIPE_HOME, a threaded LocalCluster."""
    return WorkspaceConfig()


@pytest.fixture
def store(tmp_path: Path) -> Datastore:
    """A datastore of the test's own, for calling the plain task functions directly."""
    return Datastore(url=str(tmp_path / "store")).resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    path = _SESSION_DIR / "data"
    path.mkdir(exist_ok=True)
    return path


@pytest.fixture(scope="session")
def demo_frame() -> pd.DataFrame:
    return credit_default(rows=3_000, seed=1)


@pytest.fixture(scope="session")
def demo_csv(data_dir: Path, demo_frame: pd.DataFrame) -> Path:
    path = data_dir / "credit.csv"
    demo_frame.to_csv(path, index=False)
    return path
