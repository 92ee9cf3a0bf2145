"""Everything a config file asks to run unattended, registered in one go (`mlpipe deploy --config FILE`).

- `training`: the training flow with those parameters, on demand (no schedule: run it from the UI
  or with `prefect deployment run training/NAME-training`);
- `scoring`: batch scoring on a cron schedule (`cron`, default nightly at 02:00, `timezone`,
  `deployment`, beside the `mlpipe score` parameters);
- `monitoring`: drift and performance checks on cron and retraining on their events (`MonitoringPlan`).

The file's workspace sections (`mlflow`, `datastore`, `cluster`, `gate`, `studies`, `drift`) become
every deployment's `config` parameter, so a scheduled or triggered run uses the same tracking
server and cluster as a run from the command line. Everything is validated before anything is
registered: a typo in one section leaves the server as it was.
"""

from typing import Any, TypeVar
from uuid import UUID

from pydantic import BaseModel, Field

from mlpipe.blocks.config import workspace_sections
from mlpipe.blocks.workspace import WorkspaceConfig
from mlpipe.deployments.deploy import WORK_POOL, CronExpression, TimeZone, deploy_flow
from mlpipe.deployments.monitoring import MonitoringPlan, deploy_monitoring
from mlpipe.deployments.scoring import deploy_nightly_scoring
from mlpipe.errors import ConfigError, validated
from mlpipe.flows.scoring import ScoringParams
from mlpipe.flows.training import TrainingParams, training
from mlpipe.validation import Name, Strict

SECTIONS = ("training", "scoring", "monitoring")
M = TypeVar("M", bound=BaseModel)


class Placement(Strict):
    """Where and when a section's deployment runs (keys beside its flow parameters)."""

    work_pool: str = WORK_POOL
    cron: CronExpression = "0 2 * * *"
    timezone: TimeZone = "UTC"
    deployment: Name | None = Field(default=None, description="deployment name; default from the model name")


def deploy_project(sections: dict[str, Any], source: str) -> dict[str, UUID]:
    """Register the deployments the file's sections describe; returns their ids by name.

    Raises:
        ConfigError: no section to deploy, or a field that does not validate (named with its section).
    """
    if not any(section in sections for section in SECTIONS):
        raise ConfigError(f"{source}: nothing to deploy; expected a section among {list(SECTIONS)}")
    workspace = workspace_sections(sections)
    WorkspaceConfig.from_mapping(workspace, source)
    config = workspace or None
    on_demand = _placed(sections, "training", TrainingParams, source)
    scoring = _placed(sections, "scoring", ScoringParams, source)
    monitoring = sections.get("monitoring")
    plan = validated(MonitoringPlan, monitoring, f"{source}, section 'monitoring'") if monitoring is not None else None
    ids: dict[str, UUID] = {}
    if on_demand is not None:
        train, where = on_demand
        ids["training"] = deploy_flow(
            training,
            where.deployment or f"{train.name}-training",
            train.model_dump(mode="json"),
            where.work_pool,
            ["training", train.name],
            description=(
                f"Train **{train.name}** on `{train.data}` (target `{train.target}`), on demand: *Run → Quick run* "
                "uses these parameters, *Run → Custom run* opens them in a form."
            ),
            config=config,
        )
    if scoring is not None:
        score, where = scoring
        ids["batch-scoring"] = deploy_nightly_scoring(
            cron=where.cron,
            timezone=where.timezone,
            name=where.deployment or "nightly-scoring",
            work_pool=where.work_pool,
            config=config,
            **score.model_dump(),
        )
    if plan is not None:
        ids.update(deploy_monitoring(plan, config))
    return ids


def _placed(sections: dict[str, Any], name: str, model: type[M], source: str) -> tuple[M, Placement] | None:
    """A flow section's parameters and its deployment's placement (the `Placement` keys beside them)."""
    if name not in sections:
        return None
    values = sections[name]
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: section '{name}' must be a mapping")
    where = f"{source}, section '{name}'"
    placement = {key: value for key, value in values.items() if key in Placement.model_fields}
    params = {key: value for key, value in values.items() if key not in Placement.model_fields}
    return validated(model, params, where), validated(Placement, placement, where)
