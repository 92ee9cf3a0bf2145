"""A lease: one owner at a time for something two runs must not both write (a scoring partition).

The lease is a small JSON file created with exclusive create, so of two runs racing for it
exactly one wins; the loser is told who holds it. The holder renews it in the background; a
lease whose holder died is taken over rather than blocking forever:

- at once, when the holder ran on this host and its process is gone (a killed `mlpipe score`);
- otherwise once it has not been renewed for `ttl` seconds (a holder on another machine).

Taking over goes through a second exclusive create (`<lease>.break-<token>`), so of two runs
finding the same stale lease only one removes it. A holder that could not renew in time (paused
longer than `ttl`) may find its lease taken: `check()` before committing tells it so.
"""

import datetime as dt
import os
import socket
import threading
import time
import uuid
from types import TracebackType

from fsspec.core import url_to_fs
from pydantic import BaseModel, ValidationError

from mlpipe.errors import MlpipeError
from mlpipe.processes import process_started, still_running
from mlpipe.tasks.storage import create_exclusive, write_bytes

LEASE_SECONDS = 120.0
"""How long a lease of a holder on another host outlives its last renewal (renewed every quarter of it)."""


class LeaseHeld(MlpipeError):
    """Another run holds the lease (or took it over); the message names what and who."""


class Holder(BaseModel):
    """Who holds a lease: enough for a person to find the run, and for this host to see that it died."""

    owner: str
    host: str
    pid: int
    process_started: float


class LeaseRecord(BaseModel):
    token: str
    holder: Holder
    acquired: str
    expires: float

    def describe(self) -> str:
        expires = dt.datetime.fromtimestamp(self.expires, dt.UTC).isoformat(timespec="seconds")
        return (
            f"{self.holder.owner} (host {self.holder.host}, pid {self.holder.pid}, since {self.acquired}, "
            f"lease expires {expires} unless renewed)"
        )

    def stale(self) -> bool:
        """Expired, or held by a process of this host that is gone (or whose pid another process now has)."""
        if time.time() > self.expires:
            return True
        return gone_from_this_host(self.holder.host, self.holder.pid, self.holder.process_started)


class Lease:
    """`with Lease(url, owner):` holds the lease for the block, renewing it; `LeaseHeld` if another run has it."""

    def __init__(self, url: str, owner: str, ttl: float = LEASE_SECONDS) -> None:
        self.url = url
        self.ttl = ttl
        pid = os.getpid()
        holder = Holder(owner=owner, host=socket.gethostname(), pid=pid, process_started=process_started(pid))
        self.record = LeaseRecord(
            token=uuid.uuid4().hex, holder=holder, acquired=dt.datetime.now(dt.UTC).isoformat(), expires=0.0
        )
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None

    def acquire(self) -> "Lease":
        """Take the lease, taking over a stale one.

        Raises:
            LeaseHeld: a live run holds it, naming the lease and the holder.
        """
        for _ in range(3):  # a lease that vanished or was broken between two looks: try again
            self.record.expires = time.time() + self.ttl
            try:
                create_exclusive(self.url, self._content())
            except FileExistsError:
                current = self.read()
                if current is not None and not current.stale():
                    raise LeaseHeld(f"{self.url} is held by {current.describe()}") from None
                if current is not None:
                    self._break(current)
                continue
            self._renewer = threading.Thread(target=self._renew, name=f"lease {self.url}", daemon=True)
            self._renewer.start()
            return self
        raise LeaseHeld(f"{self.url} is contended by other runs taking it over at the same time; try again")

    def check(self) -> None:
        """Raise unless this run still holds the lease: call it right before committing what the lease guards.

        Raises:
            LeaseHeld: the lease lapsed and another run took it (or it is gone).
        """
        current = self.read()
        if current is None or current.token != self.record.token:
            holder = current.describe() if current else "nobody"
            raise LeaseHeld(f"{self.url} was taken over while this run held it (now held by {holder})")

    def release(self) -> None:
        """Stop renewing and remove the lease file, if it is still ours."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join()
        current = self.read()
        if current is not None and current.token == self.record.token:
            fs, path = url_to_fs(self.url)
            fs.rm(path)

    def read(self) -> LeaseRecord | None:
        """The lease as it is now (None when there is none); one being created or unreadable counts as fresh."""
        fs, path = url_to_fs(self.url)
        try:
            content = fs.cat_file(path)
        except FileNotFoundError:
            return None
        try:
            return LeaseRecord.model_validate_json(content)
        except ValidationError:  # created but not yet written, or damaged: held until it is `ttl` old
            modified = fs.modified(path).timestamp()
            unknown = Holder(owner="an unreadable lease", host="?", pid=-1, process_started=0.0)
            acquired = dt.datetime.fromtimestamp(modified, dt.UTC).isoformat()
            return LeaseRecord(
                token=f"unreadable-{modified}", holder=unknown, acquired=acquired, expires=modified + self.ttl
            )

    def _break(self, stale: LeaseRecord) -> None:
        """Remove `stale`, unless another run is doing the same or it changed since it was read."""
        breaker = f"{self.url}.break-{stale.token}"
        try:
            create_exclusive(breaker, self.record.token.encode())
        except FileExistsError:
            raise LeaseHeld(f"{self.url} is being taken over by another run from {stale.describe()}") from None
        fs, path = url_to_fs(self.url)
        try:
            current = self.read()
            if current is not None and current.token == stale.token:
                fs.rm(path)
        finally:
            fs.rm(url_to_fs(breaker)[1])

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                current = self.read()
                if current is None or current.token != self.record.token:
                    return  # taken over: `check()` tells the run before it commits
                self.record.expires = time.time() + self.ttl
                write_bytes(self.url, self._content())
            except OSError:
                continue  # a storage blip (a full disk): the next renewal may succeed, well before expiry

    def _content(self) -> bytes:
        return self.record.model_dump_json().encode()

    def __enter__(self) -> "Lease":
        return self.acquire()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.release()


def gone_from_this_host(host: str, pid: int, started: float) -> bool:
    """A holder that ran on this host and whose process is gone (or whose pid another process now has).

    Such a holder will never renew again, so its lease can be taken over at once; a holder on
    another host can only be judged by its lease lapsing.
    """
    if host != socket.gethostname():
        return False
    return not still_running(pid, started)
