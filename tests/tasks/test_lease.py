"""A lease has one holder at a time, names it to the loser, and never blocks forever on a dead one."""

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from mlpipe.tasks.lease import Holder, Lease, LeaseHeld, LeaseRecord
from mlpipe.tasks.storage import create_exclusive

pytestmark = pytest.mark.unit


def plant(url: str, host: str, pid: int, expires_in: float) -> None:
    """A lease as another run left it."""
    holder = Holder(owner="flow run other", host=host, pid=pid, process_started=0.0)
    record = LeaseRecord(
        token="theirs", holder=holder, acquired="2026-01-01T00:00:00", expires=time.time() + expires_in
    )
    Path(url).parent.mkdir(parents=True, exist_ok=True)
    Path(url).write_text(record.model_dump_json())


def test_exclusive_create_has_one_winner(tmp_path: Path):
    target = str(tmp_path / "sub" / "one")
    create_exclusive(target, b"first")
    with pytest.raises(FileExistsError):
        create_exclusive(target, b"second")
    assert Path(target).read_bytes() == b"first"


def test_of_runs_racing_for_a_lease_exactly_one_wins_and_the_others_are_told_who(tmp_path: Path):
    url = str(tmp_path / "run=p.json")
    outcomes: list[str] = []

    def contend(index: int) -> None:
        try:
            Lease(url, f"run {index}").acquire()
            outcomes.append("won")
        except LeaseHeld as error:
            outcomes.append(str(error))

    threads = [threading.Thread(target=contend, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert outcomes.count("won") == 1
    losses = [o for o in outcomes if o != "won"]
    assert all(f"{url} is held by run " in loss and socket.gethostname() in loss for loss in losses), losses


def test_a_lease_left_by_a_killed_process_on_this_host_is_taken_over_at_once(tmp_path: Path):
    url = str(tmp_path / "run=p.json")
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    plant(url, socket.gethostname(), int(gone.stdout), expires_in=3600)
    lease = Lease(url, "me").acquire()
    assert json.loads(Path(url).read_text())["holder"]["owner"] == "me"
    lease.release()
    assert not Path(url).exists() and not list(tmp_path.iterdir())


def test_a_lease_held_on_another_host_blocks_until_it_expires(tmp_path: Path):
    url = str(tmp_path / "run=p.json")
    plant(url, "elsewhere", 1, expires_in=60)
    with pytest.raises(LeaseHeld, match=r"held by flow run other \(host elsewhere, pid 1.*lease expires"):
        Lease(url, "me").acquire()
    plant(url, "elsewhere", 1, expires_in=-1)  # not renewed for the lease time: its holder is gone
    Lease(url, "me").acquire().release()


def test_the_holder_renews_its_lease_and_learns_when_it_lost_it(tmp_path: Path):
    url = str(tmp_path / "run=p.json")
    lease = Lease(url, "me", ttl=0.4).acquire()
    first = lease.read()
    assert first is not None
    deadline = time.monotonic() + 10  # renewed every 0.1 s; a loaded machine may take longer
    while (renewed := lease.read()) is not None and renewed.expires == first.expires:
        assert time.monotonic() < deadline, "the lease was never renewed"
        time.sleep(0.05)
    assert renewed is not None and renewed.expires > first.expires
    lease.check()
    plant(url, "elsewhere", 1, expires_in=60)  # it stalled past its lease and another run took over
    with pytest.raises(LeaseHeld, match="was taken over while this run held it"):
        lease.check()
    lease.release()
    assert json.loads(Path(url).read_text())["token"] == "theirs"  # the new holder's lease is left alone
