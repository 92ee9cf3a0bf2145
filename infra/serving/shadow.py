"""Work done after the caller is answered: the challenger's shadow predictions and the capture recorder.

The request thread only puts `(inputs, predictions)` on a bounded queue (or drops them, counted,
when it is full), so neither the challenger nor a slow datastore adds latency or errors to a
caller. One thread scores the challenger on the sampled share and hands both predictions to the
recorder, the seam where capture plugs in (see `Recorder`).
"""

import logging
import queue
import random
import threading
from dataclasses import dataclass
from typing import Protocol

import pandas as pd

from mlpipe.infra.serving.metrics import ServingMetrics
from mlpipe.infra.serving.slot import ModelSlot, ServedModel
from mlpipe.tasks.monitoring.shadow import PREDICTION, agreeing_rows

log = logging.getLogger("mlpipe.serve")
RECORDER_CLOSE_SECONDS = 10.0
"""On stop, how long the recorder may take to write what it holds (the orchestrator's grace period is 30 s)."""


class Recorder(Protocol):
    """Takes what the endpoint saw, off the request path (capture's `CaptureWriter` is one)."""

    def record(
        self,
        model_name: str,
        model_version: str,
        inputs: pd.DataFrame,
        predictions: pd.DataFrame,
        shadow_predictions: pd.DataFrame | None,
        shadow_version: str | None,
    ) -> None: ...

    def close(self, timeout: float) -> None:
        """Write what is buffered (waiting at most `timeout` s); called once, when the server stops, after the last
        `record`."""


@dataclass(frozen=True)
class Answered:
    served: ServedModel
    inputs: pd.DataFrame
    predictions: pd.DataFrame
    shadow: bool


class AfterResponse:
    """The bounded queue and the thread that shadows and records."""

    def __init__(
        self, slot: ModelSlot, metrics: ServingMetrics, share: float, recorder: Recorder | None, capacity: int
    ) -> None:
        self.slot = slot
        self.metrics = metrics
        self.share = share
        self.recorder = recorder
        self._queue: queue.Queue[Answered | None] = queue.Queue(maxsize=capacity)
        self._thread = threading.Thread(target=self._work, name="mlpipe-serve-shadow", daemon=True)
        self._random = random.Random()

    @property
    def active(self) -> bool:
        return self.share > 0 or self.recorder is not None

    def start(self) -> None:
        if self.active:
            self._thread.start()

    def stop(self) -> None:
        """Finish what is queued (bounded), then stop and close the recorder."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join(timeout=30)
        if self.recorder is not None:
            self.recorder.close(timeout=RECORDER_CLOSE_SECONDS)

    def submit(self, served: ServedModel, inputs: pd.DataFrame, predictions: pd.DataFrame) -> None:
        """Queue a request answered by `served` for shadowing (a sampled share) and recording; never blocks."""
        if not self.active:
            return
        shadow = self.slot.challenger is not None and self._random.random() < self.share
        if not shadow and self.recorder is None:
            return
        try:
            self._queue.put_nowait(Answered(served, inputs, predictions, shadow))
        except queue.Full:
            self.metrics.shadow_dropped.inc()

    def idle(self) -> bool:
        """Whether everything queued so far has been handled (for tests and a drained shutdown)."""
        return self._queue.unfinished_tasks == 0

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._handle(item)
            except Exception as error:  # noqa: BLE001 - the caller was answered; counted and logged
                self.metrics.shadow_errors.inc()
                log.warning("shadow/capture failed: %s", error)
            finally:
                self._queue.task_done()

    def _handle(self, item: Answered) -> None:
        challenger = self.slot.challenger if item.shadow else None
        shadowed = None
        if challenger is not None:
            shadowed = challenger.predict(item.inputs)
            self.metrics.agreement(
                challenger.version, len(shadowed), agreeing_rows(item.predictions[PREDICTION], shadowed[PREDICTION])
            )
        if self.recorder is not None:
            self.recorder.record(
                item.served.name,
                item.served.version,
                item.inputs,
                item.predictions,
                shadowed,
                challenger.version if challenger is not None else None,
            )
