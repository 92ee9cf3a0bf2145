"""Shared fixtures: one Prefect API and one workspace per test session, real components only."""

import os
import shutil
import subprocess
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

from mlpipe.blocks import Datastore, WorkspaceConfig  # noqa: E402
from mlpipe.demo_data import credit_default  # noqa: E402
from tests import servers  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def session_dir() -> Iterator[Path]:
    """The session's workspace, Prefect home and test data; removed at the end."""
    yield _SESSION_DIR
    shutil.rmtree(_SESSION_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def prefect_api() -> Iterator[str]:
    """A temporary Prefect server with its own database, started once for the session (on first use)."""
    from prefect.settings import PREFECT_API_URL
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def shared_prefect_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The home of the session's shared `prefect server` (its database, and its log in `server.log`)."""
    return tmp_path_factory.mktemp("prefect-server")


@pytest.fixture(scope="session")
def _shared_prefect_server(shared_prefect_home: Path) -> Iterator[str]:
    """One `prefect server start` (SQLite, no credentials) for every module that needs a real server.

    Starting and stopping one costs a minute or more on two busy cores; the modules share it.
    """
    with servers.prefect_server(shared_prefect_home) as (url, _):
        yield url


@pytest.fixture(scope="module")
def prefect_server_api(_shared_prefect_server: str) -> str:
    """The API URL of a real `prefect server` on 127.0.0.1 (its UI at the URL without `/api`).

    The session's shared server, cleared of every deployment and automation when a module starts
    using it: a module sees none of another's, in any order or alone.
    """
    servers.clear_prefect_server(_shared_prefect_server)
    return _shared_prefect_server


@pytest.fixture(autouse=True)
def _prefect_unless_unit(request: pytest.FixtureRequest) -> Iterator[None]:
    """Every test but a `unit` one runs against the session's Prefect server.

    A `unit` test gets an API address where nothing listens, so one that reaches for Prefect's
    API fails at once instead of quietly starting a server.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_CLIENT_MAX_RETRIES, temporary_settings

    if request.node.get_closest_marker("unit") is None:
        request.getfixturevalue("prefect_api")
        yield
        return
    with temporary_settings({PREFECT_API_URL: "http://127.0.0.1:9/api", PREFECT_CLIENT_MAX_RETRIES: 0}):
        yield


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


_CHECKOUT = Path(__file__).resolve().parent.parent
_UNTRACKED_AT_START = pytest.StashKey[set[str] | None]()


def _untracked() -> set[str] | None:
    """Files in the checkout git neither tracks nor ignores; None outside a git checkout."""
    listing = subprocess.run(
        ["git", "ls-files", "--others", "--exclude-standard"], cwd=_CHECKOUT, capture_output=True, text=True
    )
    return set(listing.stdout.splitlines()) if listing.returncode == 0 else None


def pytest_sessionstart(session: pytest.Session) -> None:
    session.config.stash[_UNTRACKED_AT_START] = _untracked()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail a session that wrote files into the checkout: tests write under their own tmp dirs only."""
    before, after = session.config.stash[_UNTRACKED_AT_START], _untracked()
    if before is None or after is None or after <= before:
        return
    print(f"\nThe tests wrote into the checkout: {', '.join(sorted(after - before))}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED
