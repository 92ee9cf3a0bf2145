"""The ASGI app: `POST /predict`, `GET /health`, `/ready`, `/metadata`, `/metrics`; OpenAPI from the contract.

`/predict` reads the raw body (so an oversized one is refused while it arrives) and checks it
with the loaded version's own validator; FastAPI's per-request model machinery is skipped on the
hot path, and the OpenAPI schema is generated from the version serving when it is asked for.
Small requests are checked on the event loop and scored together with the others waiting (one
model call for all); batches are checked and scored one at a time in a thread of their own, so the loop keeps
accepting and reading other requests meanwhile.
"""

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from fastapi import FastAPI, Request, Response
from fastapi.openapi.utils import get_openapi

from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.infra.serving.auth import KeyCheck, load_keys
from mlpipe.infra.serving.batching import Batcher, Scored
from mlpipe.infra.serving.inputs import BadRequest
from mlpipe.infra.serving.metrics import CONTENT_TYPE, ServingMetrics
from mlpipe.infra.serving.settings import HEALTH_PATH, READY_PATH, ServeSettings
from mlpipe.infra.serving.shadow import AfterResponse, Recorder
from mlpipe.infra.serving.slot import ModelSlot, ServedModel, followed_alias
from mlpipe.tasks.monitoring.capture import CaptureWriter, capture_location

if TYPE_CHECKING:
    from mlpipe.blocks.workspace import WorkspaceConfig

log = logging.getLogger("mlpipe.serve")
INLINE_BYTES = 16_384
"""Bodies up to this size (a few dozen rows) are checked on the event loop and scored with the other small
requests waiting (batching.py); larger ones are checked and scored in a thread of their own."""
VERSION_HEADER = "X-Model-Version"
JSON = "application/json"


def app_from_environment() -> FastAPI:
    """The app of one uvicorn worker process, from the settings the command handed over.

    Each worker captures its own sample of what it answers (files never shared between writers).
    """
    settings = ServeSettings.from_environment()
    workspace = _workspace(settings.config_file)
    return create_app(settings, recorder=_capture(settings, workspace.datastore), tracking=workspace.mlflow)


def _capture(settings: ServeSettings, datastore: Datastore) -> CaptureWriter | None:
    if settings.capture_rate == 0:
        return None
    name, _ = followed_alias(settings.model)
    root = settings.capture_to or capture_location(datastore, name)
    return CaptureWriter(root, sample_rate=settings.capture_rate, storage_options=datastore.resolve().options())


def create_app(
    settings: ServeSettings, recorder: Recorder | None = None, tracking: MlflowConnection | None = None
) -> FastAPI:
    """The endpoint for `settings`; `recorder` takes what it saw (capture), off the request path."""
    keys = KeyCheck(load_keys(settings.api_keys_secret, settings.no_auth))
    tracking = (tracking or _workspace(settings.config_file).mlflow).resolve()
    metrics = ServingMetrics()
    if isinstance(recorder, CaptureWriter):
        metrics.watch_capture(lambda: recorder.counters)
    slot = ModelSlot(settings.model, tracking, shadow=settings.shadow_share > 0, poll_seconds=settings.poll_seconds)
    slot.on_swap = lambda served: metrics.serving(served.name, served.version)
    after = AfterResponse(slot, metrics, settings.shadow_share, recorder, settings.shadow_queue)
    batcher = Batcher()
    # Large bodies are scored one at a time, beside the batcher's one call: checking rows and the
    # pipeline's preprocessing hold the GIL, so more threads only take turns (measured: 4 at once
    # scored 1,000-row requests slower than 1 did).
    large = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mlpipe-serve-large")

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        slot.start()
        after.start()
        listener = asyncio.create_task(_follow_promotions(slot))
        try:
            yield
        finally:  # uvicorn has drained the requests in flight by now
            listener.cancel()
            slot.stop()
            after.stop()
            large.shutdown(wait=True)

    app = FastAPI(title=f"mlpipe serve: {settings.model}", lifespan=lifespan, docs_url="/docs", redoc_url=None)
    app.state.slot, app.state.after, app.state.metrics = slot, after, metrics

    def unauthorized() -> Response:
        return _json(
            401, {"detail": "missing or wrong API key (Authorization: Bearer KEY)"}, {"WWW-Authenticate": "Bearer"}
        )

    @app.post("/predict", openapi_extra={"requestBody": {"required": True, "content": {JSON: {"schema": {}}}}})
    async def predict(request: Request) -> Response:
        """Score rows with the champion: records, or MLflow's `dataframe_records`/`dataframe_split`/`inputs`."""
        started = time.perf_counter()
        response = await _predict(request)
        metrics.requests.labels(code=str(response.status_code)).inc()
        metrics.latency.observe(time.perf_counter() - started)
        return response

    def champion_for(request: Request) -> ServedModel | Response:
        """The version answering, or the refusal: 401 without a valid key, 503 before a version is loaded."""
        if not keys.allows(request.headers.get("authorization")):
            return unauthorized()
        served = slot.champion
        if served is None:
            return _json(503, {"detail": f"no version of {settings.model} is loaded yet"})
        return served

    async def _predict(request: Request) -> Response:
        served = champion_for(request)
        if isinstance(served, Response):
            return served
        try:
            body = await _body(request, settings.max_body_bytes)
            if len(body) <= INLINE_BYTES:
                scored = await batcher.score(served, served.rows.rows(body))
            else:
                scored = await asyncio.get_running_loop().run_in_executor(large, _score, served, body)
        except BadRequest as bad:
            return _json(bad.status, {"detail": bad.message, "errors": bad.errors})
        after.submit(served, scored.rows, scored.predictions)
        body_out = {"model": served.name, "version": served.version, "predictions": scored.records}
        return _json(200, body_out, {VERSION_HEADER: served.version})

    @app.get(HEALTH_PATH)
    async def health() -> Response:
        """Liveness: the process answers."""
        return _json(200, {"status": "ok"})

    @app.get(READY_PATH)
    async def ready() -> Response:
        """Readiness: a version is loaded and answering."""
        served = slot.champion
        if served is None:
            return _json(503, {"status": "loading", "model": settings.model})
        return _json(200, {"status": "ready", "model": served.name, "version": served.version})

    @app.get("/metadata")
    async def metadata(request: Request) -> Response:
        """The model serving: name, version, signature, data contract, and the challenger shadowed."""
        served = champion_for(request)
        if isinstance(served, Response):
            return served
        challenger = slot.challenger
        return _json(
            200,
            {
                "model": served.name,
                "version": served.version,
                "run_id": served.run_id,
                "signature": served.signature,
                "contract": served.contract.model_dump() if served.contract else None,
                "challenger": challenger.version if challenger else None,
                "shadow_share": settings.shadow_share,
            },
            {VERSION_HEADER: served.version},
        )

    @app.get("/metrics")
    async def prometheus() -> Response:
        """Prometheus exposition: requests by status, latency, the version serving, shadow agreement."""
        return Response(metrics.exposition(), media_type=CONTENT_TYPE)

    app.openapi = lambda: _openapi(app, slot.champion)  # type: ignore[method-assign]
    return app


def _score(served: ServedModel, body: bytes) -> Scored:
    """A large body's rows and their predictions (BadRequest for rows the model cannot take)."""
    rows = served.rows.parse(body)
    predictions = served.predict(rows)
    return Scored(_records(predictions), rows, predictions)


def _openapi(app: FastAPI, served: ServedModel | None) -> dict[str, Any]:
    """FastAPI's schema with `/predict`'s body from the version serving (its contract's fields and categories)."""
    schema = get_openapi(title=app.title, version=served.version if served else "0", routes=app.routes)
    if served is not None:
        body = schema["paths"]["/predict"]["post"]["requestBody"]["content"][JSON]
        body["schema"] = served.rows.request_json_schema()
    return schema


async def _body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is over `limit` bytes (announced or received)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the body is over the limit of {limit:,} bytes")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BadRequest(413, f"the body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _records(frame: Any) -> list[dict[str, Any]]:
    names = list(frame.columns)
    columns = [frame[name].tolist() for name in names]
    return [dict(zip(names, values, strict=True)) for values in zip(*columns, strict=True)]


def _json(status: int, content: Any, headers: dict[str, str] | None = None) -> Response:
    return Response(orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY), status, headers, media_type=JSON)


def _workspace(config_file: str | None) -> "WorkspaceConfig":
    from mlpipe.blocks.config import run_config

    return run_config(Path(config_file) if config_file else None).workspace


async def _follow_promotions(slot: ModelSlot) -> None:
    """Wake the registry poll on each `mlpipe.model.promoted` of this model, when a Prefect API is configured."""
    from prefect.settings import PREFECT_API_URL

    if not PREFECT_API_URL.value() or slot.alias is None:
        return
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter, EventResourceFilter

    from mlpipe.tasks.events import MODEL_PROMOTED, model_resource_id

    wanted = EventFilter(
        event=EventNameFilter(name=[MODEL_PROMOTED]),
        resource=EventResourceFilter(id=[model_resource_id(slot.name)]),
    )
    while True:
        try:
            async with get_events_subscriber(filter=wanted) as subscriber:
                async for _ in subscriber:
                    slot.wake.set()
        except asyncio.CancelledError:
            raise
        except Exception as error:  # noqa: BLE001 - polling still follows the registry; reconnect later
            log.warning("promotion events unavailable (polling every %.0f s): %s", slot.poll_seconds, error)
        await asyncio.sleep(slot.poll_seconds)
