"""Loaded by each Dask worker `mlpipe up` starts (`dask worker --preload`): the steps' libraries, imported early.

A fresh worker process imports great-expectations (about 3 s here), MLflow, scikit-learn, xgboost
and matplotlib's fonts the first time a step needs them, so the first command after `mlpipe up`
waited for each of them in turn, on each worker. They are imported in the background as the worker
starts, so the worker is ready at once and a step that needs one of them waits only for what is left.
"""

from typing import Any

from mlpipe.runtime import preload_in_background

PRELOADED = (
    "great_expectations",
    "mlpipe.tasks.model.pyfunc",
    "mlpipe.tasks.model.preprocessing",
    "xgboost",
    "matplotlib.font_manager",
)
"""What a training's steps import on the worker (validation, the model, its plots), slowest first."""


def dask_setup(worker: Any) -> None:
    """Dask's preload hook: start importing in a thread of the worker's own."""
    preload_in_background(PRELOADED)
