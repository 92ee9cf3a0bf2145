"""`mlpipe serve` captures what it answered to the datastore, and the drift check reads the capture folder."""

import signal
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest

from mlpipe.blocks import MlflowConnection
from mlpipe.tasks.monitoring.capture import PREFIX
from tests.infra.serving.conftest import auth, serve_process
from tests.infra.serving.models import feature_rows
from tests.pipeline import cli_environment

pytestmark = pytest.mark.e2e


def test_answered_rows_are_captured_by_version_and_written_on_stop(
    classifier: str, tracking: MlflowConnection, tmp_path: Path
):
    rows = feature_rows("classification", 300, seed=11)
    captures = tmp_path / "captures"
    env = cli_environment(tmp_path)
    options = ("--capture-rate", "1", "--capture-to", str(captures))
    answered = []
    with serve_process(f"{classifier}@champion", tracking, tmp_path / "serve.log", env, *options) as (base, process):
        for part in range(3):
            chunk = rows.iloc[part * 100 : (part + 1) * 100]
            body = b'{"dataframe_records": ' + chunk.to_json(orient="records").encode() + b"}"
            headers = {**auth(), "Content-Type": "application/json"}
            answer = httpx.post(f"{base}/predict", content=body, headers=headers, timeout=60)
            assert answer.status_code == 200, answer.text
            answered.append(pd.DataFrame(answer.json()["predictions"]))
        assert not list(captures.rglob("*.parquet"))  # batched: nothing written per request
        sampled = 'mlpipe_serve_capture_rows_total{outcome="sampled"} 300.0'  # recorded off the request path
        deadline = time.monotonic() + 30
        while sampled not in (metrics := httpx.get(f"{base}/metrics", timeout=10).text):
            assert time.monotonic() < deadline, metrics
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)  # type: ignore[attr-defined]
        assert process.wait(timeout=60) in (0, -signal.SIGTERM)  # type: ignore[attr-defined]

    files = sorted(captures.rglob("*.parquet"))
    assert files and all(file.parent.name == "model_version=1" for file in files)
    assert all(file.parent.parent.name.startswith("date=") for file in files)
    stored = pd.concat([pd.read_parquet(file) for file in files], ignore_index=True)
    assert len(stored) == len(rows)  # written on stop, every row at rate 1
    sent = rows.assign(answer=pd.concat(answered, ignore_index=True)["prediction"].to_numpy())
    inputs = list(rows.columns)
    matched = stored.merge(sent, on=inputs, how="inner", validate="one_to_one")
    assert len(matched) == len(rows)  # each row stored with its inputs as sent
    assert (matched[f"{PREFIX}prediction"] == matched["answer"]).all()  # and with the answer it got
