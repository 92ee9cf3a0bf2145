"""Capture: a sample of what the online endpoint was asked and answered, appended to the datastore as Parquet.

The endpoint calls `CaptureWriter.record` off its request path; the call samples rows, queues
them and returns (it never raises and never waits on the datastore). A background thread writes
a batch when it holds `batch_rows` rows or its oldest row is `batch_seconds` old:

    ROOT/date=YYYY-MM-DD/model_version=N/part-<uuid>.parquet     (date of capture, UTC)

each file written under a hidden name and renamed (tasks/storage.py), so a reader sees whole
files or none. A slow datastore costs rows, not memory: beyond `max_pending_rows` rows not yet
written, new rows are dropped and counted (`counters`).

Columns: the model's inputs under the names its contract gives them, so `mlpipe drift --current
ROOT` reads a capture folder as it reads any folder of files (it reads only the model's input
columns); then capture's own columns, all named `mlpipe_…`: the answer (`mlpipe_prediction`,
`mlpipe_probability_<class>`), the shadowed challenger's answer and version
(`mlpipe_shadow_prediction`, …, `mlpipe_shadow_version`), the model's name and the time
(`mlpipe_model`, `mlpipe_captured_at`).
"""

import datetime as dt
import logging
import threading
import time
import uuid
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
from fsspec.core import url_to_fs

from mlpipe.blocks.datastore import Datastore
from mlpipe.redaction import redact
from mlpipe.tasks.storage import child, write_parquet

PREFIX = "mlpipe_"
"""Capture's own columns start with this; the model's inputs keep their names."""
SHADOW_PREFIX = f"{PREFIX}shadow_"
SHADOW_VERSION = f"{SHADOW_PREFIX}version"
MODEL = f"{PREFIX}model"
CAPTURED_AT = f"{PREFIX}captured_at"
DATE_KEY = "date"
VERSION_KEY = "model_version"
CAPTURES = "captures"
"""The datastore's folder of captures, one folder per model under it."""

_LOG = logging.getLogger(__name__)


def capture_location(datastore: Datastore, model: str) -> str:
    """Where a model's captured traffic lives: `<datastore>/captures/<model>` (what `mlpipe drift --current` takes)."""
    url = datastore.resolve().url
    assert url is not None  # resolve() fills it
    return child(url, CAPTURES, model)


def partition_folder(captured: dt.datetime, model_version: str) -> str:
    """`date=YYYY-MM-DD/model_version=N`: the folder rows captured at `captured` (UTC) from that version go to."""
    return f"{DATE_KEY}={captured.astimezone(dt.UTC):%Y-%m-%d}/{VERSION_KEY}={model_version}"


@dataclass(frozen=True)
class CaptureCounters:
    """Rows through the writer since it started (for the endpoint's metrics)."""

    offered: int
    """Rows given to `record`."""
    sampled: int
    """Rows the sample chose."""
    written: int
    dropped: int
    """Sampled rows left out: the pending bound was reached (a slow datastore) or the writer was closing."""
    failed: int
    """Sampled rows whose write failed (the datastore refused) or that could not be assembled."""
    files: int
    pending: int
    """Rows queued or being written now."""


@dataclass(frozen=True)
class _Capture:
    """One `record` call's sampled rows, assembled into columns by the writer's thread."""

    captured: dt.datetime
    model: str
    version: str
    inputs: pd.DataFrame
    predictions: pd.DataFrame
    shadow: pd.DataFrame | None
    shadow_version: str | None

    @property
    def rows(self) -> int:
        return len(self.inputs)


def capture_frame(capture: _Capture) -> pd.DataFrame:
    """The rows as they are stored: inputs under their own names, then capture's `mlpipe_…` columns.

    Raises:
        ValueError: an input column is named like one of capture's own (it would be overwritten).
    """
    inputs = capture.inputs.reset_index(drop=True)
    reserved = [str(name) for name in inputs.columns if str(name).startswith(PREFIX)]
    if reserved:
        raise ValueError(f"input columns {reserved} start with {PREFIX!r}, which capture keeps for its own columns")
    parts = [inputs, capture.predictions.reset_index(drop=True).add_prefix(PREFIX)]
    if capture.shadow is not None:
        parts.append(capture.shadow.reset_index(drop=True).add_prefix(SHADOW_PREFIX))
    frame = pd.concat(parts, axis=1)
    frame[SHADOW_VERSION] = pd.Series(capture.shadow_version, index=frame.index, dtype="string")
    frame[MODEL] = capture.model
    frame[CAPTURED_AT] = pd.Timestamp(capture.captured)
    return frame


class CaptureWriter:
    """Samples, queues and writes captured rows; one per endpoint process, closed when it stops."""

    def __init__(
        self,
        root: str,
        *,
        sample_rate: float,
        batch_rows: int = 10_000,
        batch_seconds: float = 60.0,
        max_pending_rows: int = 100_000,
        storage_options: dict[str, object] | None = None,
        seed: int | None = None,
    ) -> None:
        """`root`: a local path or fsspec URL (`capture_location` gives the datastore's); `storage_options`:
        the datastore's (`Datastore.options()`), credentials included; `seed` fixes the sample (tests).

        Raises:
            ValueError: a rate outside [0, 1] or a bound that is not positive, named.
        """
        if not 0.0 <= sample_rate <= 1.0:
            raise ValueError(f"capture sample_rate: expected a share between 0 and 1, got {sample_rate}")
        for name, value in (("batch_rows", batch_rows), ("batch_seconds", batch_seconds)):
            if value <= 0:
                raise ValueError(f"capture {name}: expected a positive number, got {value}")
        if max_pending_rows < batch_rows:
            raise ValueError(
                f"capture max_pending_rows ({max_pending_rows}) must be at least batch_rows ({batch_rows})"
            )
        self.root = root.rstrip("/")
        self.sample_rate = sample_rate
        self._fs, self._path = url_to_fs(self.root, **(storage_options or {}))
        self._batch_rows, self._batch_seconds, self._max_pending = batch_rows, batch_seconds, max_pending_rows
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._queue: list[_Capture] = []
        self._queued = 0
        self._oldest = 0.0
        self._closing = False
        self._counts = dict.fromkeys(("offered", "sampled", "written", "dropped", "failed", "files", "pending"), 0)
        self._warned: set[str] = set()
        self._thread = threading.Thread(target=self._run, name="mlpipe-capture", daemon=True)
        self._thread.start()

    @property
    def counters(self) -> CaptureCounters:
        with self._lock:
            return CaptureCounters(**self._counts)

    def record(
        self,
        model_name: str,
        model_version: str,
        inputs: pd.DataFrame,
        predictions: pd.DataFrame,
        shadow_predictions: pd.DataFrame | None = None,
        shadow_version: str | None = None,
    ) -> None:
        """Queue a sample of these rows (row i of each frame belongs together); returns at once, never raises.

        The frames are kept, not copied, when every row is taken: the caller must not change them afterwards.
        """
        rows = 0
        try:
            rows = len(inputs)
            for name, frame in (("predictions", predictions), ("shadow_predictions", shadow_predictions)):
                if frame is not None and len(frame) != rows:
                    raise ValueError(f"{name} has {len(frame)} rows, inputs {rows}")
            with self._lock:
                self._counts["offered"] += rows
                chosen = self._sample(rows)
            if chosen is None or len(chosen):
                capture = _Capture(
                    captured=dt.datetime.now(dt.UTC),
                    model=model_name,
                    version=str(model_version),
                    inputs=_take(inputs, chosen),
                    predictions=_take(predictions, chosen),
                    shadow=None if shadow_predictions is None else _take(shadow_predictions, chosen),
                    shadow_version=shadow_version,
                )
                self._enqueue(capture)
        except Exception as error:  # noqa: BLE001 - capture must never fail a request
            with self._lock:
                self._counts["failed"] += rows
            self._warn_once("record", f"capture: rows could not be recorded: {error}")

    def close(self, timeout: float) -> None:
        """Write what is queued (waiting at most `timeout` seconds) and stop; later `record` calls are dropped."""
        with self._lock:
            self._closing = True
            self._wake.notify()
        self._thread.join(timeout)
        if self._thread.is_alive():
            _LOG.warning("capture: %d rows still being written after %.1f s", self.counters.pending, timeout)

    def _sample(self, rows: int) -> np.ndarray | None:
        """Positions of the rows taken (None: all of them). Called under the lock: the generator is not thread-safe."""
        if self.sample_rate >= 1.0:
            return None
        if self.sample_rate <= 0.0:
            return np.empty(0, dtype="int64")
        return np.flatnonzero(self._rng.random(rows) < self.sample_rate)

    def _enqueue(self, capture: _Capture) -> None:
        with self._lock:
            self._counts["sampled"] += capture.rows
            if self._closing or self._counts["pending"] + capture.rows > self._max_pending:
                self._counts["dropped"] += capture.rows
                dropped = True
            else:
                dropped = False
                first = not self._queue
                if first:
                    self._oldest = time.monotonic()
                self._queue.append(capture)
                self._queued += capture.rows
                self._counts["pending"] += capture.rows
                if first or self._queued >= self._batch_rows:  # the first row starts the batch's clock
                    self._wake.notify()
        if dropped:
            self._warn_once("dropped", f"capture: over {self._max_pending:,} rows waiting for the datastore; dropping")

    def _run(self) -> None:
        """The writer's thread: wait for a full or old enough batch, write it, until closed and empty."""
        while True:
            with self._lock:
                while not self._closing and self._queued < self._batch_rows:
                    if self._queue and time.monotonic() - self._oldest >= self._batch_seconds:
                        break
                    wait = self._batch_seconds - (time.monotonic() - self._oldest) if self._queue else None
                    self._wake.wait(wait)
                batch, rows = self._queue, self._queued
                self._queue, self._queued = [], 0
            if not batch:  # closing, and everything is written
                return
            written = self._write(batch)
            with self._lock:
                self._counts["pending"] -= rows
                self._counts["written"] += written
                self._counts["failed"] += rows - written

    def _write(self, batch: list[_Capture]) -> int:
        """One file per date and model version; returns the rows written (a failed file costs its rows)."""
        groups: dict[str, list[_Capture]] = {}
        for capture in batch:
            groups.setdefault(partition_folder(capture.captured, capture.version), []).append(capture)
        written = 0
        for folder, captures in groups.items():
            try:
                frame = pd.concat([capture_frame(capture) for capture in captures], ignore_index=True)
                target = child(self._path, folder, f"part-{uuid.uuid4().hex}.parquet")
                self._fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                write_parquet(pa.Table.from_pandas(frame, preserve_index=False), target, self._fs)
            except Exception as error:  # noqa: BLE001 - the datastore refused, or the rows do not fit: counted
                self._warn_once("write", f"capture: a batch for {self.root}/{folder} was not written: {error}")
                continue
            written += len(frame)
            with self._lock:
                self._counts["files"] += 1
        return written

    def _warn_once(self, kind: str, message: str) -> None:
        """The first problem of each kind is logged; the counters tell how often it happened since."""
        if kind not in self._warned:
            self._warned.add(kind)
            _LOG.warning(redact(message))


def _take(frame: pd.DataFrame, positions: np.ndarray | None) -> pd.DataFrame:
    return frame if positions is None else frame.iloc[positions]
