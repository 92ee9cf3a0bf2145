"""One sweep per study: the lease in each kind of study storage (journal file, SQLite, Redis)."""

import os
import socket
import subprocess
import sys
import threading
import time
import uuid
import warnings
from pathlib import Path

import pytest

from mlpipe.blocks import StudyStorage
from mlpipe.tasks.sweep.lease import LeaseRecord, StudyBusy, StudyLost, hold_study, lease_store
from tests.pipeline import wait_for

pytestmark = pytest.mark.unit


@pytest.fixture(params=["journal", "sqlite", "redis"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> StudyStorage:
    urls = {
        "journal": str(tmp_path / "optuna.journal"),
        "sqlite": f"sqlite:///{tmp_path / 'optuna.db'}",
        "redis": "redis://127.0.0.1:6379/14",
    }
    return StudyStorage(url=urls[request.param], lease_seconds=2)


def test_a_redis_study_store_opens_without_optunas_experimental_warning():
    """The journal on Redis is optuna's experimental backend class, chosen by mlpipe for a `redis://` URL:
    its warning printed in every process that opened the store. (A URL no other test opens: stores
    are opened once per process.)"""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        StudyStorage(url="redis://127.0.0.1:6379/13").open()
    assert [str(warning.message) for warning in shown] == []


ONE_STORE = pytest.mark.parametrize("storage", ["journal"], indirect=True)
"""Lease logic that is the same on every store; the compare-and-set of each store is tested with all three."""


@pytest.fixture
def study() -> str:
    return f"study-{uuid.uuid4().hex[:8]}"


def claim(host: str, pid: int, started: float, renewed: float) -> str:
    """A claim as another sweep would have written it."""
    return LeaseRecord(
        token="other",
        holder=f"ci@{host} pid {pid}",
        host=host,
        pid=pid,
        pid_started=started,
        since=renewed,
        renewed=renewed,
        seconds=2,
    ).model_dump_json()


def test_a_second_sweep_is_refused_naming_the_study_the_holder_and_since_when(storage: StudyStorage, study: str):
    with (
        hold_study(storage, study),
        pytest.raises(StudyBusy, match=rf"study '{study}' is in use by another sweep: .*pid {os.getpid()} since 20"),
        hold_study(storage, study),
    ):
        pass
    with hold_study(storage, study):  # released at the end: free again
        pass


def test_of_many_sweeps_starting_together_exactly_one_holds_the_study(storage: StudyStorage, study: str):
    results: list[str] = []
    barrier = threading.Barrier(6)
    release = threading.Event()

    def contend() -> None:
        barrier.wait()
        try:
            with hold_study(storage, study):
                results.append("held")
                release.wait(10)
        except StudyBusy:
            results.append("busy")

    threads = [threading.Thread(target=contend) for _ in range(6)]
    for thread in threads:
        thread.start()
    wait_for(lambda: len(results) == 6, 30, "every contender's answer")
    release.set()
    for thread in threads:
        thread.join()
    assert sorted(results) == ["busy"] * 5 + ["held"]


@ONE_STORE
def test_the_heartbeat_keeps_the_study_past_the_lease_time(storage: StudyStorage, study: str):
    with hold_study(storage, study) as lease:
        time.sleep(2.5)  # longer than lease_seconds: only the heartbeat keeps it
        with pytest.raises(StudyBusy), hold_study(storage, study):
            pass
        lease.check()


@ONE_STORE
def test_a_claim_whose_heartbeat_stopped_expires_and_a_live_one_elsewhere_does_not(storage: StudyStorage, study: str):
    store = lease_store(storage)
    assert store.swap(study, None, claim("elsewhere", 1, 1.0, time.time()))
    with pytest.raises(StudyBusy, match="ci@elsewhere pid 1"), hold_study(storage, study):
        pass
    stale = claim("elsewhere", 1, 1.0, time.time() - 3)
    assert store.swap(study, store.read(study), stale)
    with hold_study(storage, study):
        assert store.read(study) != stale


@ONE_STORE
def test_a_killed_sweep_on_this_host_is_taken_over_at_once(storage: StudyStorage, study: str):
    import psutil

    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = psutil.Process(process.pid).create_time()
    store = lease_store(storage)
    assert store.swap(study, None, claim(socket.gethostname(), process.pid, started, time.time()))
    with pytest.raises(StudyBusy), hold_study(storage, study):
        pass
    process.kill()
    process.wait()
    with hold_study(storage, study):  # its heartbeat is fresh, but its process is gone
        pass


@ONE_STORE
def test_a_sweep_waits_for_the_holder_to_finish(storage: StudyStorage, study: str):
    holding = hold_study(storage, study)
    holding.__enter__()
    threading.Timer(1.0, holding.__exit__, (None, None, None)).start()
    started = time.monotonic()
    with hold_study(storage, study, wait=30):
        assert 0.5 < time.monotonic() - started < 10


def test_a_sweep_whose_study_was_taken_over_stops_before_its_next_write(storage: StudyStorage, study: str):
    store = lease_store(storage)
    with hold_study(storage, study) as lease:
        assert store.swap(study, lease.written, claim("elsewhere", 1, 1.0, time.time()))
        wait_for(lambda: lease.lost is not None, 10, "the heartbeat to notice")
        with pytest.raises(StudyLost, match=rf"sweep of study '{study}' stopped: another sweep took .* ci@elsewhere"):
            lease.check()
    assert "ci@elsewhere" in (store.read(study) or "")  # the new holder's claim is left alone
