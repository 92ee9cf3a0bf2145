"""A flow run's end does not wait for Prefect's heartbeat thread.

Prefect's flow engine sends a run's heartbeats from a thread that sleeps in one-second slices,
and the synchronous engine joins that thread when the run ends: a second at the end of a short
run, up to one at the end of any run whose settings ask for heartbeats (Prefect's default, every
180 s: deployment runs and every flow run of a long-lived process). Prefect's asynchronous
engine already leaves the thread to end by itself, and so does every mlpipe flow: the thread is
a daemon that sees the stop flag before its next slice, and sends no heartbeat for a run that
has ended.
"""

import functools


def end_runs_without_waiting_for_heartbeats() -> None:
    """Make this process's flow runs end without joining their heartbeat thread (idempotent).

    A Prefect without the private function leaves runs as they are (`tests/flows/test_flow_end.py`
    then fails) rather than break every flow.
    """
    import prefect.flow_engine as engine

    send_heartbeats = getattr(engine, "_send_heartbeats", None)
    if send_heartbeats is not None and not isinstance(send_heartbeats, functools.partial):
        engine._send_heartbeats = functools.partial(send_heartbeats, join_on_exit=False)
