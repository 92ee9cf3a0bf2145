"""The challenger scores a share of live requests off the request path: no error, no latency at the p50, captured."""

import json
import statistics
import threading
import time

import httpx
import mlflow
import pandas as pd
import pytest

from mlpipe.blocks import MlflowConnection
from mlpipe.tasks.registry.aliases import CHALLENGER, set_champion
from tests.infra.serving.conftest import auth, running, settings
from tests.infra.serving.models import feature_rows, register_model
from tests.pipeline import wait_for

pytestmark = pytest.mark.e2e
REQUESTS = 300


class ListRecorder:
    """What capture would be handed, kept in memory."""

    def __init__(self) -> None:
        self.calls: list[dict] = []
        self.closed = False
        self.lock = threading.Lock()

    def close(self, timeout: float) -> None:
        self.closed = True

    def record(self, model_name, model_version, inputs, predictions, shadow_predictions, shadow_version) -> None:
        with self.lock:
            self.calls.append(
                {
                    "model": model_name,
                    "version": model_version,
                    "inputs": inputs,
                    "predictions": predictions,
                    "shadow": shadow_predictions,
                    "shadow_version": shadow_version,
                }
            )


def test_shadowing_adds_no_error_nor_latency_and_is_captured(tracking: MlflowConnection):
    name = "shadowed"
    set_champion(name, register_model(tracking, name, seed=0), tracking, reason="test")
    challenger = register_model(tracking, name, seed=3, trees=60)
    tracking.client().set_registered_model_alias(name, CHALLENGER, challenger)
    rows = json.loads(feature_rows("classification", REQUESTS, seed=9).to_json(orient="records"))
    recorder = ListRecorder()
    shadowing = settings(f"{name}@champion", shadow_share=1.0)
    with (
        running(shadowing, tracking, recorder=recorder) as (shadowed, app),
        running(settings(f"{name}@champion"), tracking) as (plain, _),
    ):
        wait_for(lambda: app.state.slot.challenger is not None, 30, "the challenger to load")
        latency: dict[str, list[float]] = {shadowed: [], plain: []}
        statuses = []
        with httpx.Client(headers=auth()) as client:
            for row in rows:  # alternating, so both see the same machine load
                for base in (shadowed, plain):
                    started = time.perf_counter()
                    statuses.append(client.post(f"{base}/predict", json=[row]).status_code)
                    latency[base].append(time.perf_counter() - started)
        wait_for(app.state.after.idle, 30, "the shadow queue to empty")
        metrics = httpx.get(f"{shadowed}/metrics").text
    assert set(statuses) == {200}
    assert recorder.closed  # when the server stopped
    p50 = {base: statistics.median(values) for base, values in latency.items()}
    assert p50[shadowed] <= p50[plain] * 1.2 + 0.0005, p50  # noise margin: 20 % and half a millisecond
    assert len(recorder.calls) == REQUESTS and {call["shadow_version"] for call in recorder.calls} == {challenger}
    shadow = pd.concat([call["shadow"] for call in recorder.calls], ignore_index=True)
    inputs = pd.concat([call["inputs"] for call in recorder.calls], ignore_index=True)
    with tracking.session():
        expected = mlflow.pyfunc.load_model(f"models:/{name}/{challenger}").predict(inputs)
    pd.testing.assert_frame_equal(shadow, expected, check_dtype=False, rtol=1e-6)
    agreeing = sum(
        int((call["predictions"]["prediction"] == call["shadow"]["prediction"]).sum()) for call in recorder.calls
    )
    assert f'mlpipe_serve_shadow_agreement{{version="{challenger}"}} {agreeing / REQUESTS}' in metrics
    assert "mlpipe_serve_shadow_errors_total 0.0" in metrics
