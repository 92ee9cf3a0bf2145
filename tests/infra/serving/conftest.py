"""An MLflow registry on SQLite with a tiny classifier and regressor as champions, and the endpoint on 127.0.0.1."""

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI

from mlpipe.blocks import MlflowConnection
from mlpipe.infra.serving.app import create_app
from mlpipe.infra.serving.settings import ServeSettings
from mlpipe.infra.serving.shadow import Recorder
from mlpipe.tasks.registry.aliases import set_champion
from tests.infra.serving.models import register_model
from tests.servers import BIN, free_port, serving

KEY = "test-key-0123456789"


@pytest.fixture(scope="session")
def tracking(tmp_path_factory: pytest.TempPathFactory) -> MlflowConnection:
    home = tmp_path_factory.mktemp("serving-registry")
    return MlflowConnection(
        tracking_uri=f"sqlite:///{home / 'mlflow.db'}", artifact_location=(home / "artifacts").as_uri()
    ).resolve()


@pytest.fixture(scope="session")
def classifier(tracking: MlflowConnection) -> str:
    """A registered classifier whose version 1 is champion."""
    set_champion("credit", register_model(tracking, "credit"), tracking, reason="test")
    return "credit"


@pytest.fixture(scope="session")
def regressor(tracking: MlflowConnection) -> str:
    set_champion("rate", register_model(tracking, "rate", task="regression"), tracking, reason="test")
    return "rate"


def settings(model: str, **options: object) -> ServeSettings:
    return ServeSettings(model=model, **options)  # type: ignore[arg-type]


@contextmanager
def running(
    app_settings: ServeSettings,
    tracking: MlflowConnection,
    recorder: Recorder | None = None,
    keys: str = KEY,
) -> Iterator[tuple[str, FastAPI]]:
    """The app under a real uvicorn on a free 127.0.0.1 port, in a thread; its base URL once a version is ready."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLPIPE_API_KEYS", keys)
        app = create_app(app_settings, recorder=recorder, tracking=tracking)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        deadline = time.monotonic() + 60
        while True:
            try:
                if httpx.get(f"{base}/ready", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("the endpoint never became ready")
            time.sleep(0.1)
        yield base, app
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@contextmanager
def serve_process(
    model: str, tracking: MlflowConnection, log: Path, env: dict[str, str], *options: str
) -> Iterator[tuple[str, object]]:
    """`mlpipe serve` as a user starts it, once `/ready` answers; stopped (SIGTERM) when the block ends."""
    port = free_port()
    command = [str(BIN / "mlpipe"), "serve", "--model", model, "--port", str(port), *options]
    environment = {**env, "MLFLOW_TRACKING_URI": str(tracking.tracking_uri), "MLPIPE_API_KEYS": KEY}
    with serving(command, f"http://127.0.0.1:{port}/ready", log, environment) as process:
        yield f"http://127.0.0.1:{port}", process


def auth() -> dict[str, str]:
    return {"Authorization": f"Bearer {KEY}"}
