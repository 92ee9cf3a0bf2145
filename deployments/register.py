"""Registering a flow of this project as a deployment on the Prefect server in `PREFECT_API_URL`.

Every deployment runs the flow from this checkout (`Flow.from_source` on the project folder, no
image to build) on a `process` work pool that `mlpipe worker` serves.
"""

from pathlib import Path
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound

PROJECT = Path(__file__).resolve().parent.parent
WORK_POOL = "mlpipe"
"""The process work pool `mlpipe worker` serves."""


def register(
    entrypoint: str,
    name: str,
    params: dict[str, Any],
    work_pool: str,
    tags: list[str],
    config: dict[str, Any] | None = None,
    **options: Any,
) -> UUID:
    """Register (or update) a deployment of the flow at `entrypoint` (`flows/x.py:function`); returns its id.

    `config` (workspace sections: `mlflow`, `cluster`, …) becomes the flow's `config` parameter;
    without it, runs use the local defaults and the worker's environment (`MLFLOW_TRACKING_URI`, …).
    """
    ensure_work_pool(work_pool)
    source = Flow.from_source(source=str(PROJECT), entrypoint=entrypoint)
    return source.deploy(  # type: ignore[union-attr,return-value]  # sync call outside an event loop
        name=name,
        work_pool_name=work_pool,
        parameters={"params": params, **({"config": config} if config else {})},
        tags=["mlpipe", *tags],
        build=False,
        push=False,
        print_next_steps=False,
        **options,
    )


def ensure_work_pool(name: str) -> None:
    """Create the process work pool if the server does not have it yet."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
