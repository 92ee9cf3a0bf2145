"""One sweep per study at a time: a lease with a heartbeat, kept in the study's own storage.

Two sweeps of one study would each take the other's running trials for a dead process's
(`requeue_interrupted`), fail them and run them again, and both would spend the trial budget.
So a sweep claims its study before it touches it: the claim is a small record in the same
store as the trials (a file next to the journal file, a key in the same Redis, a table in the
same database), written only by compare-and-set, so of two sweeps that start together exactly
one wins. A heartbeat thread renews it; a claim whose holder stopped renewing for
`StudyStorage.lease_seconds` has expired and may be taken over, and one whose holder process
is gone from this host is taken over at once, so a killed sweep resumes without waiting.
"""

import fcntl
import getpass
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from pydantic import BaseModel

from mlpipe.blocks.study import StudyStorage
from mlpipe.errors import MlpipeError
from mlpipe.processes import process_started
from mlpipe.tasks.lease import gone_from_this_host

HEARTBEATS_PER_LEASE = 4
"""Renewals within one lease period: a missed beat or two (a storage blip) does not lose the study."""


class StudyBusy(MlpipeError):
    """Another sweep holds the study."""


class StudyLost(MlpipeError):
    """This sweep's claim expired or was taken over; it stops before it writes another trial."""


class LeaseRecord(BaseModel):
    """Who holds a study, since when, and when they last said they are alive."""

    token: str
    holder: str
    host: str
    pid: int
    pid_started: float
    since: float
    renewed: float
    seconds: float

    def expired(self, now: float) -> bool:
        return now - self.renewed > self.seconds

    def holder_gone(self) -> bool:
        """The holding process no longer runs on this host (killed: its heartbeat will never come)."""
        return gone_from_this_host(self.host, self.pid, self.pid_started)

    def describe(self, now: float) -> str:
        since = datetime.fromtimestamp(self.since, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        return f"{self.holder} since {since} (last heartbeat {now - self.renewed:.0f} s ago)"


class LeaseStore(Protocol):
    """Compare-and-set of one text value per study: the only way a claim is written."""

    def read(self, study: str) -> str | None: ...

    def swap(self, study: str, expected: str | None, new: str | None) -> bool:
        """Set the value to `new` (None removes it) only if it is `expected`; whether it was."""
        ...


class FileLeases:
    """Claims as files beside the journal file, each read and changed under `flock`."""

    def __init__(self, journal: str) -> None:
        self.folder = Path(f"{journal}.leases")

    def read(self, study: str) -> str | None:
        with self._locked(study, fcntl.LOCK_SH) as descriptor:
            return os.read(descriptor, 1 << 16).decode() or None

    def swap(self, study: str, expected: str | None, new: str | None) -> bool:
        with self._locked(study, fcntl.LOCK_EX) as descriptor:
            if (os.read(descriptor, 1 << 16).decode() or None) != expected:
                return False
            os.ftruncate(descriptor, 0)
            os.pwrite(descriptor, (new or "").encode(), 0)
            os.fsync(descriptor)
            return True

    @contextmanager
    def _locked(self, study: str, mode: int) -> Iterator[int]:
        self.folder.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.folder / f"{study}.json", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, mode)
            yield descriptor
        finally:
            os.close(descriptor)  # releases the lock


_REDIS_SWAP = """
local current = redis.call('GET', KEYS[1])
if (current == false and ARGV[1] == '') or current == ARGV[1] then
  if ARGV[2] == '' then redis.call('DEL', KEYS[1]) else redis.call('SET', KEYS[1], ARGV[2]) end
  return 1
end
return 0
"""


class RedisLeases:
    """Claims as keys in the study's Redis, swapped by a server-side script (atomic)."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.script = client.register_script(_REDIS_SWAP)

    def read(self, study: str) -> str | None:
        value = self.client.get(_redis_key(study))
        return value.decode() if value else None

    def swap(self, study: str, expected: str | None, new: str | None) -> bool:
        return bool(self.script(keys=[_redis_key(study)], args=[expected or "", new or ""]))


def _redis_key(study: str) -> str:
    return f"mlpipe:study-lease:{study}"


class SqlLeases:
    """Claims as rows of `mlpipe_study_leases` in the study's database: insert, or update/delete where unchanged."""

    def __init__(self, engine: Any) -> None:
        import sqlalchemy as sa

        self.engine = engine
        self.table = sa.Table(
            "mlpipe_study_leases",
            sa.MetaData(),
            sa.Column("study", sa.String(512), primary_key=True),
            sa.Column("record", sa.Text, nullable=False),
        )
        try:
            self.table.create(engine, checkfirst=True)
        except sa.exc.DatabaseError:  # another sweep created it in between
            if not sa.inspect(engine).has_table(self.table.name):
                raise

    def read(self, study: str) -> str | None:
        with self.engine.connect() as connection:
            row = connection.execute(self.table.select().where(self.table.c.study == study)).first()
        return str(row.record) if row else None

    def swap(self, study: str, expected: str | None, new: str | None) -> bool:
        import sqlalchemy as sa

        table = self.table
        unchanged = sa.and_(table.c.study == study, table.c.record == expected)
        with self.engine.begin() as connection:
            if expected is None:
                try:
                    with connection.begin_nested():
                        connection.execute(table.insert().values(study=study, record=new))
                except sa.exc.IntegrityError:
                    return False
                return True
            if new is None:
                return bool(connection.execute(table.delete().where(unchanged)).rowcount == 1)
            return bool(connection.execute(table.update().where(unchanged).values(record=new)).rowcount == 1)


def lease_store(storage: StudyStorage) -> LeaseStore:
    """The claims' store inside the study storage, reached through the same opened connection."""
    from optuna.storages import JournalStorage, RDBStorage
    from optuna.storages.journal import JournalFileBackend, JournalRedisBackend

    opened = storage.open()
    if isinstance(opened, RDBStorage):
        return SqlLeases(opened.engine)
    backend = opened._backend if isinstance(opened, JournalStorage) else None
    if isinstance(backend, JournalRedisBackend):
        return RedisLeases(backend._redis)
    if isinstance(backend, JournalFileBackend):
        return FileLeases(backend._file_path)
    raise TypeError(f"no lease for a study storage of type {type(opened).__name__}")


class StudyLease:
    """This process's claim on one study, renewed by a heartbeat thread while the sweep runs."""

    def __init__(self, store: LeaseStore, study: str, seconds: float) -> None:
        self.store, self.study, self.seconds = store, study, seconds
        now = time.time()
        pid = os.getpid()
        self.record = LeaseRecord(
            token=uuid.uuid4().hex,
            holder=f"{getpass.getuser()}@{socket.gethostname()} pid {pid}{_flow_run()}",
            host=socket.gethostname(),
            pid=pid,
            pid_started=process_started(pid),
            since=now,
            renewed=now,
            seconds=seconds,
        )
        self.written = ""
        self.lost: str | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self, wait: float) -> None:
        """Claim the study, waiting up to `wait` seconds for another sweep to finish with it.

        Raises:
            StudyBusy: another live sweep still holds it.
        """
        deadline = time.monotonic() + wait
        while True:
            current = self.store.read(self.study)
            holder = LeaseRecord.model_validate_json(current) if current else None
            now = time.time()
            if holder is None or holder.expired(now) or holder.holder_gone():
                claim = self.record.model_copy(update={"since": now, "renewed": now})
                if self.store.swap(self.study, current, claim.model_dump_json()):
                    self.record, self.written = claim, claim.model_dump_json()
                    self._beat = threading.Thread(target=self._heartbeat, name=f"lease-{self.study}", daemon=True)
                    self._beat.start()
                    return
                continue  # another sweep changed it first: look again
            if time.monotonic() >= deadline:
                raise StudyBusy(
                    f"study '{self.study}' is in use by another sweep: {holder.describe(now)}; a claim expires "
                    f"{holder.seconds:.0f} s after its last heartbeat. Run this sweep when that one has finished "
                    "(--wait-for-study SECONDS waits for it), or give another --study name"
                )
            time.sleep(min(1.0, max(0.0, deadline - time.monotonic())))

    def check(self) -> None:
        """Raise if the claim was lost, before this sweep writes to the study again.

        Raises:
            StudyLost: the claim expired or another sweep took the study over.
        """
        if self.lost:
            raise StudyLost(f"sweep of study '{self.study}' stopped: {self.lost}")

    def release(self) -> None:
        """Stop the heartbeat and give the study up (if the store is unreachable, the claim lapses instead)."""
        self._stop.set()
        if self._beat is not None:
            self._beat.join()
        if not self.lost and self.written:
            with suppress(Exception):
                self.store.swap(self.study, self.written, None)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.seconds / HEARTBEATS_PER_LEASE):
            renewed = self.record.model_copy(update={"renewed": time.time()})
            try:
                if not self.store.swap(self.study, self.written, renewed.model_dump_json()):
                    self.lost = f"another sweep took the study over: {self._holder_now()}"
                    return
            except Exception as error:  # noqa: BLE001 - a storage blip: the next beat tries again
                if self.record.expired(time.time()):
                    self.lost = f"its claim lapsed: the study storage was unreachable ({error})"
                    return
                continue
            self.record, self.written = renewed, renewed.model_dump_json()

    def _holder_now(self) -> str:
        current = self.store.read(self.study)
        return LeaseRecord.model_validate_json(current).describe(time.time()) if current else "nobody"


@contextmanager
def hold_study(storage: StudyStorage, study: str, wait: float = 0.0) -> Iterator[StudyLease]:
    """Hold the study for the duration of the block (see the module's docstring)."""
    lease = StudyLease(lease_store(storage), study, storage.lease_seconds)
    lease.acquire(wait)
    try:
        yield lease
    finally:
        lease.release()


def _flow_run() -> str:
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return f" (flow run '{context.flow_run.name}')" if context is not None and context.flow_run else ""
