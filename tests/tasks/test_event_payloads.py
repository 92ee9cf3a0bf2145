"""Events about a model carry no URI password or token: the payload is redacted where events are emitted."""

import pytest

from mlpipe.tasks.events import DRIFT_CHECKED, emit
from tests.pipeline import model_events

pytestmark = pytest.mark.flow


def test_an_event_payload_with_a_presigned_location_reaches_the_api_masked():
    payload = {"current": ["https://lake.example/2026-12-01.parquet?X-Amz-Signature=s3cret"], "drifted": False}
    emit(DRIFT_CHECKED, "event-redaction", "1", payload)
    (event,) = model_events("event-redaction", DRIFT_CHECKED, "1")
    assert event.payload == {
        "current": ["https://lake.example/2026-12-01.parquet?X-Amz-Signature=***"],
        "drifted": False,
    }
