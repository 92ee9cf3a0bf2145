"""A check's events are confirmed stored by the Prefect API before the check returns; a lost one fails it."""

import time

import pytest
from prefect import flow

from mlpipe.tasks.events import DRIFT_CHECKED, DRIFT_DETECTED, EventNotDelivered, announce
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
