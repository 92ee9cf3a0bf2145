"""A check's events are confirmed stored by the Prefect API before the check returns; a lost one fails it."""

import time

import pytest
from prefect import flow

from mlpipe.tasks.events import DRIFT_CHECKED, DRIFT_DETECTED, EventNotDelivered, announce
from tests.flaky_http import flaky_proxy
from tests.pipeline import model_events


@flow(name="announcing-check")
def announcing_check(model: str) -> None:
    announce(DRIFT_CHECKED, DRIFT_DETECTED, True, model, "7", {"drifted": True})


@pytest.mark.flow
def test_a_checks_events_are_readable_from_the_api_when_it_returns():
    announcing_check("announced")
    for event in (DRIFT_CHECKED, DRIFT_DETECTED):
        assert len(model_events("announced", event, "7", wait=0)) == 1, event  # no waiting: already stored


@pytest.mark.unit  # the API address here is one where nothing listens
def test_an_event_the_api_never_received_fails_the_check_naming_the_api():
    start = time.monotonic()
    with pytest.raises(EventNotDelivered, match=r"mlpipe.drift.checked.*127.0.0.1:9/api.*will not fire"):
        announce(DRIFT_CHECKED, DRIFT_DETECTED, False, "unheard", "1", {}, within=3)
    assert time.monotonic() - start < 15


@pytest.mark.flow
def test_a_proxy_that_refuses_the_events_websocket_still_gets_the_checks_events(prefect_api: str):
    """Prefect's sender streams events over a websocket; the check posts those it cannot read back over HTTP."""
    from prefect.events.worker import EventsWorker
    from prefect.settings import PREFECT_API_URL, temporary_settings

    def refuse_websockets(path: str, body: bytes) -> bool:
        return path.startswith("/api/events/in")

    EventsWorker.drain_all(at_exit=False)  # the next sender connects through the proxy
    with flaky_proxy(prefect_api.removesuffix("/api"), refuse_websockets, lambda *_: None) as (url, proxy):
        with temporary_settings({PREFECT_API_URL: f"{url}/api"}):
            announce(DRIFT_CHECKED, DRIFT_DETECTED, True, "proxied", "3", {"drifted": True})
            EventsWorker.drain_all(at_exit=False)
        refused = list(proxy.failed)
    assert refused and all(request == "GET /api/events/in" for request in refused), refused
    for event in (DRIFT_CHECKED, DRIFT_DETECTED):
        assert len(model_events("proxied", event, "3", wait=0)) == 1, event  # stored once, by the time it returned
