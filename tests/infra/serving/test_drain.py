"""SIGTERM lets the requests in flight finish before `mlpipe serve` exits."""

import signal
import threading
import time
from pathlib import Path

import httpx
import pytest

from mlpipe.blocks import MlflowConnection
from tests.infra.serving.conftest import auth, serve_process
from tests.infra.serving.models import feature_rows
from tests.pipeline import cli_environment

pytestmark = pytest.mark.e2e


def test_sigterm_drains_requests_in_flight(classifier: str, tracking: MlflowConnection, tmp_path: Path):
    rows = feature_rows("classification", 10_000, seed=5)
    batch = b'{"dataframe_records": ' + rows.to_json(orient="records").encode() + b"}"
    headers = {**auth(), "Content-Type": "application/json"}
    answers: list[int | str] = []

    def call(base: str) -> None:
        try:
            answers.append(httpx.post(f"{base}/predict", content=batch, headers=headers, timeout=120).status_code)
        except httpx.HTTPError as error:
            answers.append(repr(error))

    env = cli_environment(tmp_path)
    with serve_process(f"{classifier}@champion", tracking, tmp_path / "serve.log", env) as (base, process):
        callers = [threading.Thread(target=call, args=(base,)) for _ in range(6)]
        for caller in callers:
            caller.start()
        time.sleep(0.5)  # bodies sent, batches being scored one after another
        process.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        for caller in callers:
            caller.join(timeout=120)
        code = process.wait(timeout=60)  # type: ignore[attr-defined]
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"{base}/health")
    assert answers == [200] * 6
    assert code in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once drained: a clean stop
