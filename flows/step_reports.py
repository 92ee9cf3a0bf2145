"""How each step that ran in another process ended, told in the flow's process for the command's progress lines.

Prefect logs a step's end ("Finished in state Completed()") in the process that ran it. With
threaded local workers that is the flow's own process, where a command shows it as a progress
line; on worker processes (`processes: true`, `mlpipe up`'s workers, a remote cluster) it went
to the Prefect API only, and the command printed nothing between the flow's start and its end.
The flow's process learns of each step's end from Dask and logs it on `LOGGER` instead, once.
Nothing is reported unless a handler listens (a command's progress lines), so a deployment's
run fetches nothing more.
"""

import logging
import threading
from functools import partial
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import distributed

LOGGER = logging.getLogger("mlpipe.steps")
"""Records with `step` (the task's name) and `state` (Prefect's state name: Completed, Cached, Failed…)."""
LOGGER.setLevel(logging.INFO)
LOGGER.propagate = False  # for the progress lines only: Prefect's own handlers show or send the step's logs

_pending = 0
_all_told = threading.Condition()


def follow(future: "distributed.Future", step: str) -> None:
    """Log how `future`'s step ends, if anyone listens. Its result is a Prefect state (fetched again, small)."""
    if not LOGGER.handlers:
        return
    global _pending
    with _all_told:
        _pending += 1
    future.add_done_callback(partial(_tell, step))


def wait_until_told(timeout: float) -> None:
    """Wait for the steps that ended to be logged: the flow's own end is shown after theirs."""
    with _all_told:
        _all_told.wait_for(lambda: _pending == 0, timeout)


def _tell(step: str, future: "distributed.Future") -> None:
    global _pending
    try:
        if future.status == "finished":  # a lost or cancelled step fails the flow, which says so
            state = future.result()
            LOGGER.info("%s: %s", step, state.name, extra={"step": step, "state": state.name})
    except Exception:  # the cluster closing: the flow's own outcome says what happened
        logging.getLogger(__name__).debug("could not tell how %s ended", step, exc_info=True)
    finally:
        with _all_told:
            _pending -= 1
            _all_told.notify_all()
