"""`mlpipe serve` follows `champion` under steady load: no request fails, answers switch to the new version."""

import json
import threading
import time
from pathlib import Path

import httpx
import pytest

from mlpipe.blocks import MlflowConnection
from mlpipe.tasks.events import MODEL_PROMOTED, emit
from mlpipe.tasks.registry.aliases import set_champion
from tests.infra.serving.conftest import auth, serve_process
from tests.infra.serving.models import feature_rows, register_model
from tests.pipeline import cli_environment, wait_for

pytestmark = pytest.mark.e2e
CLIENTS = 8


class Load:
    """`CLIENTS` threads posting single rows in a loop; each keeps (status, version) in order."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.row = json.loads(feature_rows("classification", 1, seed=4).to_json(orient="records"))
        self.answers: list[list[tuple[int, str | None]]] = [[] for _ in range(CLIENTS)]
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(i,)) for i in range(CLIENTS)]

    def _client(self, index: int) -> None:
        with httpx.Client(headers=auth(), timeout=30) as client:
            while not self.stop.is_set():
                try:
                    answer = client.post(f"{self.base}/predict", json=self.row)
                    self.answers[index].append((answer.status_code, answer.headers.get("X-Model-Version")))
                except httpx.HTTPError as error:
                    self.failures.append(repr(error))

    def versions(self) -> set[str | None]:
        return {version for answers in self.answers for _, version in answers}

    def __enter__(self) -> "Load":
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=60)


def check_switched(load: Load) -> None:
    statuses = {status for answers in load.answers for status, _ in answers}
    assert load.failures == [] and statuses == {200}, (load.failures[:3], statuses)
    for answers in load.answers:  # each client's requests are sequential: once it saw v2, only v2
        versions = [version for _, version in answers]
        assert versions[0] == "1" and versions[-1] == "2"
        assert "1" not in versions[versions.index("2") :]


def test_a_promotion_under_load_fails_no_request(tracking: MlflowConnection, tmp_path: Path):
    name = "swap"
    first = register_model(tracking, name, seed=0)
    second = register_model(tracking, name, seed=1)
    set_champion(name, first, tracking, reason="test")
    env = cli_environment(tmp_path)
    with serve_process(f"{name}@champion", tracking, tmp_path / "serve.log", env, "--poll-seconds", "0.5") as (
        base,
        _,
    ):
        with Load(base) as load:
            time.sleep(2)
            set_champion(name, second, tracking, reason="test")
            wait_for(lambda: "2" in load.versions(), 60, "answers from version 2")
            time.sleep(1)
        metrics = httpx.get(f"{base}/metrics").text
    check_switched(load)
    assert 'mlpipe_serve_model_version{model="swap",version="2"} 1.0' in metrics
    assert 'version="1"} 1.0' not in metrics


def test_a_promoted_event_swaps_without_waiting_for_the_poll(tracking: MlflowConnection, tmp_path: Path):
    name = "evented"
    first = register_model(tracking, name, seed=0)
    second = register_model(tracking, name, seed=2)
    set_champion(name, first, tracking, reason="test")
    env = cli_environment(tmp_path)
    with (
        serve_process(f"{name}@champion", tracking, tmp_path / "serve.log", env, "--poll-seconds", "600") as (
            base,
            _,
        ),
        Load(base) as load,
    ):
        time.sleep(2)
        set_champion(name, second, tracking, reason="test")
        started = time.monotonic()
        emit(MODEL_PROMOTED, name, second, {"from": first})
        wait_for(lambda: "2" in load.versions(), 60, "answers from version 2 after the event")
        seconds = time.monotonic() - started
        time.sleep(1)
    check_switched(load)
    assert seconds < 60  # the poll alone would have taken 600 s
