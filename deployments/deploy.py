"""Registering one of mlpipe's flows as a deployment on the Prefect server in `PREFECT_API_URL`.

A deployment names its flow by import path (`mlpipe.flows.training.training`), so a Prefect
worker runs it from the mlpipe installed in the worker's environment: no source folder to
pull and no image to build. `mlpipe worker` serves the `process` work pool they run on.
"""

from typing import Annotated, Any, cast
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.schedules import CronSchedule
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import ObjectNotFound
from prefect.types.entrypoint import EntrypointType
from pydantic import AfterValidator, ValidationError

from mlpipe.errors import ConfigError
from mlpipe.validation import check_name

WORK_POOL = "mlpipe"
"""The process work pool `mlpipe worker` serves."""


def _schedulable(cron: str, timezone: str = "UTC") -> bool:
    """Whether Prefect accepts this cron expression and time zone (its own validation, before any server call)."""
    try:
        CronSchedule(cron=cron, timezone=timezone)
    except ValidationError:
        return False
    return True


def check_cron(expression: str) -> str:
    """`expression` if it is a cron schedule Prefect can run; a ValueError naming it otherwise."""
    if not _schedulable(expression):
        raise ValueError(f"{expression!r} is not a cron expression (minute hour day month weekday)")
    return expression


def check_timezone(zone: str) -> str:
    """`zone` if it is an IANA time zone; a ValueError naming it otherwise."""
    if not _schedulable("0 0 * * *", zone):
        raise ValueError(f"{zone!r} is not an IANA time zone (for example Europe/Paris)")
    return zone


CronExpression = Annotated[str, AfterValidator(check_cron)]
TimeZone = Annotated[str, AfterValidator(check_timezone)]


def deploy_flow(
    flow: Flow[Any, Any],
    name: str,
    params: dict[str, Any],
    work_pool: str,
    tags: list[str],
    config: dict[str, Any] | None = None,
    *,
    description: str = "",
    **options: Any,
) -> UUID:
    """Register (or update) a deployment of `flow`; returns its id.

    `description` says what this deployment runs, when and on what; the Prefect UI shows it (as
    markdown) above the flow's own docstring. `config` (workspace sections: `mlflow`, `cluster`, …)
    becomes the flow's `config` parameter; without it, runs use the local defaults and the worker's
    environment (`MLFLOW_TRACKING_URI`, …). `options` are `Flow.to_deployment`'s: schedules,
    triggers, concurrency_limit.
    """
    for what, value in (("deployment", name), ("work pool", work_pool)):
        try:
            check_name(value)
        except ValueError as error:
            raise ConfigError(f"{what} name: {error}") from None
    ensure_work_pool(work_pool)
    # Prefect's sync/async dispatch: called outside an event loop, both return their values.
    deployment = cast(
        RunnerDeployment,
        flow.to_deployment(
            name=name,
            parameters={"params": params, **({"config": config} if config else {})},
            tags=["mlpipe", *tags],
            work_pool_name=work_pool,
            entrypoint_type=EntrypointType.MODULE_PATH,
            description=f"{description}\n\n{flow.description or ''}".strip(),
            **options,
        ),
    )
    return cast(UUID, deployment.apply(work_pool_name=work_pool))


def ensure_work_pool(name: str) -> None:
    """Create the process work pool if the server does not have it yet."""
    with get_client(sync_client=True) as client:
        try:
            client.read_work_pool(name)
        except ObjectNotFound:
            client.create_work_pool(WorkPoolCreate(name=name, type="process"))
