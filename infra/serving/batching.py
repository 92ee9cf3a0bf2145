"""Concurrent small requests scored together: one model call for the rows of every request that is waiting.

The pipeline's fixed cost per call (pandas, the column transformer, the booster's set-up) is
most of a single row's time, so under load one call for 64 waiting rows answers far more
requests than 64 calls. Nothing waits on purpose: the first request is scored at once, and the
requests arriving meanwhile make the next call. A model's predictions for a row do not depend
on the other rows of its call, so each caller gets what a call of its own would give.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pandas as pd
from fastapi.concurrency import run_in_threadpool

from mlpipe.infra.serving.slot import ServedModel

MAX_ROWS = 2_048
"""Rows in one call at most; the rest wait for the next one."""


@dataclass
class Scored:
    """One request's rows and predictions: records for the answer, frames for the shadow and capture."""

    records: list[dict[str, Any]]
    rows: pd.DataFrame
    predictions: pd.DataFrame


@dataclass
class _Waiting:
    served: ServedModel
    rows: list[dict[str, Any]]
    done: "asyncio.Future[Scored]" = field(default_factory=lambda: asyncio.get_running_loop().create_future())


class Batcher:
    """One model call at a time per process, holding every request that arrived while the last one ran."""

    def __init__(self) -> None:
        self._waiting: list[_Waiting] = []
        self._running = False

    async def score(self, served: ServedModel, rows: list[dict[str, Any]]) -> Scored:
        waiting = _Waiting(served, rows)
        self._waiting.append(waiting)
        if not self._running:
            self._running = True
            asyncio.get_running_loop().create_task(self._drain())
        return await waiting.done

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = _take(self._waiting)
                try:
                    results = await run_in_threadpool(_score, batch)
                except Exception as error:  # noqa: BLE001 - each caller gets the model's error as its own
                    for waiting in batch:
                        waiting.done.set_exception(error)
                    continue
                for waiting, result in zip(batch, results, strict=True):
                    waiting.done.set_result(result)
        finally:
            self._running = False


def _take(waiting: list[_Waiting]) -> tuple[list[_Waiting], list[_Waiting]]:
    """The requests of the next call (one version, up to MAX_ROWS rows) and those left for later."""
    served, size, taken = waiting[0].served, 0, 0
    for item in waiting:
        if item.served is not served or (taken and size + len(item.rows) > MAX_ROWS):
            break
        size += len(item.rows)
        taken += 1
    return waiting[:taken], waiting[taken:]


def _score(batch: list[_Waiting]) -> list[Scored]:
    served = batch[0].served
    rows = served.rows.frame([row for item in batch for row in item.rows])
    predictions = served.predict(rows)
    names = list(predictions.columns)
    columns = [predictions[name].tolist() for name in names]
    records = [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]
    results, start = [], 0
    for item in batch:
        end = start + len(item.rows)
        part = slice(start, end)
        results.append(Scored(records[part], rows.iloc[part], predictions.iloc[part]))
        start = end
    return results
