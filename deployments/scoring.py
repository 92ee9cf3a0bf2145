"""Nightly batch scoring: a cron deployment of the batch-scoring flow on a process work pool.

Each scheduled run resolves the model reference (`NAME@champion`: tonight's champion) and fills
`{window_start:…}` / `{window_end:…}` in the input location from its own scheduled time, so a
backfill (a run scheduled for a past time) scores that night's files into that night's partition.
"""

from typing import Any
from uuid import UUID

from prefect.schedules import Cron

from mlpipe.deployments.deploy import WORK_POOL, check_cron, check_timezone, deploy_flow
from mlpipe.errors import ConfigError, validated
from mlpipe.flows.scoring import ScoringParams, batch_scoring


def deploy_nightly_scoring(
    model: str,
    input: str,
    output: str,
    cron: str = "0 2 * * *",
    timezone: str = "UTC",
    name: str = "nightly-scoring",
    work_pool: str = WORK_POOL,
    config: dict[str, Any] | None = None,
    **settings: Any,
) -> UUID:
    """Register (or update) the nightly scoring deployment on the Prefect server; returns its id.

    The parameters are validated here, so a typo fails now rather than at 2 a.m.
    """
    try:
        check_cron(cron)
        check_timezone(timezone)
    except ValueError as error:
        raise ConfigError(f"scoring schedule: {error}") from None
    params = validated(ScoringParams, {"model": model, "input": input, "output": output, **settings}, "scoring")
    return deploy_flow(
        batch_scoring,
        name,
        params.model_dump(mode="json"),
        work_pool,
        ["scoring"],
        config,
        schedules=[Cron(cron, timezone=timezone)],
        description=f"Score `{input}` with **{model}** into `{output}` on the schedule `{cron}` ({timezone}).",
    )
