"""Nightly batch scoring: a cron deployment of the batch-scoring flow on a process work pool.

Each scheduled run resolves the model reference (`NAME@champion`: tonight's champion) and fills
`{window_start:…}` / `{window_end:…}` in the input location from its own scheduled time, so a
backfill (a run scheduled for a past time) scores that night's files into that night's partition.
"""

from pathlib import Path
from typing import Any
from uuid import UUID

from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.exceptions import ObjectNotFound
from prefect.schedules import Cron

from flows.scoring import ScoringParams, batch_scoring

PROJECT = Path(__file__).resolve().parent.parent
WORK_POOL = "mlpipe"
"""The process work pool `prefect worker start --pool mlpipe` serves."""


def deploy_nightly_scoring(
    model: str,
    input: str,
    output: str,
    cron: str = "0 2 * * *",
    timezone: str = "UTC",
    name: str = "nightly-scoring",
    work_pool: str = WORK_POOL,
    **settings: Any,
) -> UUID:
    """Register (or update) the nightly scoring deployment on the Prefect server; returns its id.

    The parameters are validated here, so a typo fails now rather than at 2 a.m.
    """
    params = ScoringParams(model=model, input=input, output=output, **settings)
    ensure_work_pool(work_pool)
    source = batch_scoring.from_source(source=str(PROJECT), entrypoint="flows/scoring.py:batch_scoring")
    return source.deploy(  # type: ignore[union-attr,return-value]  # sync call outside an event loop
        name=name,
        work_pool_name=work_pool,
        schedules=[Cron(cron, timezone=timezone)],
        parameters={"params": params.model_dump(mode="json")},
        description=f"score {input} with {model} into {output}, {cron} ({timezone})",
        tags=["mlpipe", "scoring"],
        build=False,
        push=False,
        print_next_steps=False,
    )


def ensure_work_pool(name: str) -> None:
    """Create the process work pool if the server does not have it yet."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
