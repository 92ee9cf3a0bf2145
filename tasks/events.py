"""The events checks and retraining emit, and the model they are about.

A model is an event resource named `mlpipe.model.<name>` with the version as a label, so a
deployment trigger reacts to one model's drift by name, never by a UUID.
"""

import time
from typing import TYPE_CHECKING, Any

from mlpipe.errors import MlpipeError

if TYPE_CHECKING:
    from prefect.events import Event

DRIFT_CHECKED = "mlpipe.drift.checked"
DRIFT_DETECTED = "mlpipe.drift.detected"
PERFORMANCE_CHECKED = "mlpipe.performance.checked"
PERFORMANCE_DEGRADED = "mlpipe.performance.degraded"
MODEL_PROMOTED = "mlpipe.model.promoted"
MODEL_REJECTED = "mlpipe.model.rejected"
DELIVERY_SECONDS = 30.0
"""How long a check waits for the Prefect API to confirm its events (sending, then storing them)."""


class EventNotDelivered(MlpipeError):
    """A check's event did not reach the Prefect API: the triggers that listen for it will not fire."""


def model_resource_id(name: str) -> str:
    """The resource id of a registered model: what triggers match on."""
    return f"mlpipe.model.{name}"


def model_resource(name: str, version: str) -> dict[str, str]:
    """A model version as a Prefect event resource."""
    return {
        "prefect.resource.id": model_resource_id(name),
        "prefect.resource.name": name,
        "mlpipe.model.name": name,
        "mlpipe.model.version": version,
    }


def emit(event: str, name: str, version: str, payload: dict[str, Any]) -> "Event | None":
    """Emit `event` about a model version (sent to the Prefect API in the background); the event, None when off."""
    from prefect.events import emit_event

    from mlpipe.redaction import redact

    return emit_event(event, resource=model_resource(name, version), payload=redact(payload))


def announce(
    checked: str,
    alarm: str,
    raised: bool,
    name: str,
    version: str,
    payload: dict[str, Any],
    within: float = DELIVERY_SECONDS,
) -> None:
    """Every check emits `checked`; one that found a problem also emits `alarm`, which retraining listens for.

    Both are confirmed stored by the Prefect API before the check returns: an alarm lost on the
    way (an API that went away, a proxy that refuses the events websocket) would otherwise leave
    a drifted model in place with a check that says it raised the alarm. The check fails instead,
    after its report was published; running it again announces again.
    """
    events = [emit(checked, name, version, payload)]
    if raised:
        events.append(emit(alarm, name, version, payload))
    confirm_delivered(events, within)


def confirm_delivered(events: "list[Event | None]", seconds: float) -> None:
    """Flush Prefect's event sender and read every event back from the API by id, within `seconds`.

    Prefect sends events from a background sender over a websocket. One that cannot connect (a
    proxy that refuses websockets) or stalls would lose them: events not read back by half of
    `seconds` are posted again over HTTP, as they are. The API stores an event once and its
    triggers act on it once, by id, whichever copy arrives first.
    """
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventIDFilter
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL

    where = PREFECT_API_URL.value() or "the temporary Prefect API"
    if any(event is None for event in events):
        raise EventNotDelivered(f"events are turned off for {where}; checks need them to trigger retraining")
    missing = {event.id: event for event in events if event is not None}
    started = time.monotonic()
    resend_at, deadline = started + seconds / 2, started + seconds
    EventsWorker.drain_all(timeout=seconds / 2, at_exit=False)
    resent = False
    error: Exception | None = None
    while missing and time.monotonic() < deadline:
        try:
            with get_client(sync_client=True) as client:
                if not resent and time.monotonic() >= resend_at:
                    client.request(
                        "POST", "/events", json=[event.model_dump(mode="json") for event in missing.values()]
                    )
                    resent = True
                page = client.read_events(EventFilter(id=EventIDFilter(id=list(missing))), limit=len(missing))
            error = None
        except (httpx.HTTPError, OSError) as failure:  # reported below if the events never show
            error = failure
            page = None
        for stored in page.events if page else []:
            missing.pop(stored.id, None)
        if missing:
            time.sleep(0.5)
    if missing:
        reason = f": {type(error).__name__}: {error}" if error else ""
        raise EventNotDelivered(
            f"event(s) {sorted(event.event for event in missing.values())} not confirmed by {where} "
            f"within {seconds:.0f} s{reason}; triggers listening for them will not fire"
        )
