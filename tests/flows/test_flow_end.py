"""A flow run ends when its work does: nothing at its end waits on Prefect's heartbeat thread."""

import time

import pytest
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings

from mlpipe.flows.common import pipeline_flow

pytestmark = pytest.mark.flow


@pipeline_flow("quick")
def quick() -> float:
    return time.monotonic()


def test_a_flow_run_with_heartbeats_ends_without_waiting_for_the_heartbeat_thread():
    """The thread sends a heartbeat as the run starts, then sleeps in one-second slices: a run shorter than a second
    that waited for it would end about a second after its start (as Prefect's own engine does)."""
    with temporary_settings({PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 30}):
        quick()  # Prefect's first flow run in this process pays for more than heartbeats
        waits = []
        for _ in range(3):
            returned = quick()
            waits.append(time.monotonic() - returned)
    assert max(waits) < 0.5, waits
