"""The closed loop: scheduled drift and performance checks, and retraining triggered by what they find.

`drift-check` and `performance-check` run on cron schedules; `retraining` runs when either emits
`mlpipe.drift.detected` or `mlpipe.performance.degraded` for the same model (matched by event
name and the model's resource id, never a UUID), at most once per `debounce_minutes` (a reactive
trigger fires once per window) and one at a time (a concurrency limit of one; a run that would
overlap is cancelled).
"""

import datetime as dt
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.schemas.objects import ConcurrencyLimitConfig, ConcurrencyLimitStrategy
from prefect.events import DeploymentEventTrigger
from prefect.schedules import Cron
from pydantic import Field

from mlpipe.deployments.deploy import WORK_POOL, CronExpression, TimeZone, deploy_flow
from mlpipe.flows.common import WindowTemplate
from mlpipe.flows.drift import DriftParams, drift_check
from mlpipe.flows.performance import PerformanceParams, performance_check
from mlpipe.flows.retraining import RetrainingParams, retraining
from mlpipe.tasks.events import DRIFT_DETECTED, PERFORMANCE_DEGRADED, model_resource_id
from mlpipe.validation import Name, Strict


class MonitoringPlan(Strict):
    """What to watch for one model, when, and what to retrain on."""

    model: Name
    target: str = Field(description="label column of the labelled data")
    current: WindowTemplate = Field(
        description="new (unlabelled) data for the drift check; may hold {window_start:%Y-%m-%d}; the scoring "
        "endpoint's captured traffic: <datastore>/captures/<model>/date={window_start:%Y-%m-%d}"
    )
    recent: WindowTemplate = Field(description="recent labelled data to retrain on; may hold {window_start:%Y-%m-%d}")
    window_days: float = Field(default=1.0, gt=0, description="the windows' length, ending at each run's time")
    history: str | None = Field(default=None, description="older labelled data to retrain on too")
    exclude: list[str] = Field(default_factory=list, description="columns that are not features")
    predictions: str | None = Field(default=None, description="scored output, for the performance check")
    labels: str | None = Field(default=None, description="late labels, for the performance check")
    id_column: str | None = None
    performance_metric: str = "accuracy"
    performance_threshold: float = 0.88
    drift_cron: CronExpression = "0 3 * * *"
    performance_cron: CronExpression = "0 4 * * *"
    timezone: TimeZone = "UTC"
    debounce_minutes: float = Field(default=60.0, gt=0, description="at most one retraining per model per window")
    work_pool: str = WORK_POOL


def deploy_monitoring(plan: MonitoringPlan, config: dict[str, Any] | None = None) -> dict[str, UUID]:
    """Register the drift check, the performance check (with labels) and triggered retraining; returns their ids.

    `config`: workspace sections passed to every run (see `mlpipe.deployments.deploy.deploy_flow`).
    """
    drift = DriftParams(model=plan.model, current=plan.current, window_days=plan.window_days)
    ids = {
        "drift-check": _deploy(
            drift_check,
            f"{plan.model}-drift",
            drift.model_dump(mode="json"),
            plan,
            config,
            schedules=[Cron(plan.drift_cron, timezone=plan.timezone)],
            description=f"Compare `{plan.current}` with **{plan.model}**'s training data on the schedule "
            f"`{plan.drift_cron}` ({plan.timezone}); drift emits `{DRIFT_DETECTED}`, which starts "
            f"`retraining/{plan.model}-retraining`.",
        )
    }
    if plan.predictions and plan.labels and plan.id_column:
        performance = PerformanceParams(
            model=plan.model,
            predictions=plan.predictions,
            labels=plan.labels,
            id_column=plan.id_column,
            label_column=plan.target,
            metric=plan.performance_metric,
            threshold=plan.performance_threshold,
            window_days=plan.window_days,
        )
        ids["performance-check"] = _deploy(
            performance_check,
            f"{plan.model}-performance",
            performance.model_dump(mode="json"),
            plan,
            config,
            schedules=[Cron(plan.performance_cron, timezone=plan.timezone)],
            description=f"Score **{plan.model}**'s predictions against late labels on the schedule "
            f"`{plan.performance_cron}` ({plan.timezone}); {plan.performance_metric} below "
            f"{plan.performance_threshold} emits `{PERFORMANCE_DEGRADED}`, which starts "
            f"`retraining/{plan.model}-retraining`.",
        )
    params = RetrainingParams(
        data=plan.recent,
        history=plan.history,
        target=plan.target,
        name=plan.model,
        exclude=plan.exclude,
        window_days=plan.window_days,
    ).model_dump(mode="json")
    trigger = DeploymentEventTrigger(
        name=f"retrain {plan.model} on drift or degraded performance",
        description=(  # shown as plain text in the UI's list of automations
            f"When {DRIFT_DETECTED} or {PERFORMANCE_DEGRADED} is emitted for model {plan.model}, run "
            f"retraining/{plan.model}-retraining: at most once per {plan.debounce_minutes:g} minutes, one at a time."
        ),
        expect={DRIFT_DETECTED, PERFORMANCE_DEGRADED},
        match={"prefect.resource.id": model_resource_id(plan.model)},
        posture="Reactive",
        threshold=1,
        within=dt.timedelta(minutes=plan.debounce_minutes),
        parameters={"params": {**params, "reason": "{{ event.event }}"}},
    )
    ids["retraining"] = _deploy(
        retraining,
        f"{plan.model}-retraining",
        params,
        plan,
        config,
        triggers=[trigger],
        concurrency_limit=ConcurrencyLimitConfig(limit=1, collision_strategy=ConcurrencyLimitStrategy.CANCEL_NEW),
        description=f"Retrain **{plan.model}** on `{plan.recent}`"
        + (f" and `{plan.history}`" if plan.history else "")
        + f" when a check finds drift or degraded performance (automation: {trigger.name}); the challenger "
        "is promoted only if it beats the champion.",
    )
    return ids


def _deploy(
    flow: Flow[Any, Any],
    name: str,
    params: dict[str, Any],
    plan: MonitoringPlan,
    config: dict[str, Any] | None,
    *,
    description: str,
    **options: Any,
) -> UUID:
    return deploy_flow(flow, name, params, plan.work_pool, [plan.model], config, description=description, **options)
