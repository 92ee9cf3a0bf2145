"""The closed loop's deployments as registered on a Prefect server: schedules, event triggers, concurrency."""

import re
from pathlib import Path
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client

from mlpipe.deployments.monitoring import MonitoringPlan, deploy_monitoring
from mlpipe.flows.drift import drift_check
from tests.pipeline import run_cli

pytestmark = pytest.mark.flow


def test_checks_are_scheduled_and_retraining_is_triggered_by_events_for_this_model_only():
    plan = MonitoringPlan(
        model="loop-demo",
        target="default",
        current="/lake/applications/latest/",
        recent="/lake/labelled/recent/",
        history="/lake/labelled/2025.parquet",
        predictions="/lake/scores/",
        labels="/lake/labels/",
        id_column="application_id",
        debounce_minutes=30,
    )
    ids = deploy_monitoring(plan)
    assert set(ids) == {"drift-check", "performance-check", "retraining"}
    with get_client(sync_client=True) as client:
        drift = client.read_deployment(ids["drift-check"])
        performance = client.read_deployment(ids["performance-check"])
        retraining = client.read_deployment(ids["retraining"])
        automations = client.read_resource_related_automations(f"prefect.deployment.{ids['retraining']}")
    assert drift.schedules[0].schedule.cron == "0 3 * * *" and drift.parameters["params"]["model"] == "loop-demo"
    assert performance.schedules[0].schedule.cron == "0 4 * * *"
    assert performance.parameters["params"]["threshold"] == 0.88
    assert performance.parameters["params"]["window_days"] == 1.0  # only the last night's partitions are read
    assert not retraining.schedules
    assert retraining.global_concurrency_limit is not None and retraining.global_concurrency_limit.limit == 1
    assert retraining.concurrency_options.collision_strategy == "CANCEL_NEW"

    (automation,) = automations
    trigger = automation.trigger
    assert trigger.expect == {"mlpipe.drift.detected", "mlpipe.performance.degraded"}
    assert trigger.match.model_dump() == {"prefect.resource.id": "mlpipe.model.loop-demo"}  # a name, never a UUID
    assert trigger.posture == "Reactive" and trigger.threshold == 1
    assert trigger.within.total_seconds() == 30 * 60  # at most one retraining per half hour
    (action,) = automation.actions
    assert action.deployment_id == ids["retraining"]
    assert action.parameters["params"]["reason"] == "{{ event.event }}"
    assert action.parameters["params"]["history"] == "/lake/labelled/2025.parquet"


PROJECT_FILE = """\
mlflow: {tracking_uri: "sqlite:///shared/mlflow.db"}
training:
  data: /lake/labelled/all.parquet
  target: default
  name: one-file
  exclude: [application_id]
scoring:
  model: one-file@champion
  input: "/lake/new/{window_start:%Y-%m-%d}/"
  output: /lake/scores/
  cron: "30 1 * * *"
monitoring:
  model: one-file
  target: default
  current: "/lake/new/{window_start:%Y-%m-%d}/"
  recent: "/lake/labelled/{window_start:%Y-%m-%d}/"
  window_days: 7
"""


def test_one_deploy_command_registers_training_scoring_and_the_loop_with_the_files_workspace(tmp_path: Path):
    config = tmp_path / "project.yaml"
    config.write_text(PROJECT_FILE)
    result = run_cli("deploy", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    ids = dict(re.findall(r"^([\w-]+): ([0-9a-f-]{36})$", result.stdout, re.MULTILINE))
    assert set(ids) == {"training", "batch-scoring", "drift-check", "retraining"}  # no labels: no performance check
    with get_client(sync_client=True) as client:
        deployments = {name: client.read_deployment(UUID(value)) for name, value in ids.items()}
    assert (
        deployments["training"].schedules == []
        and deployments["training"].entrypoint == "mlpipe.flows.training.training"
    )
    assert deployments["batch-scoring"].schedules[0].schedule.cron == "30 1 * * *"
    assert deployments["drift-check"].parameters["params"]["window_days"] == 7
    assert deployments["retraining"].parameters["params"]["data"] == "/lake/labelled/{window_start:%Y-%m-%d}/"
    for deployment in deployments.values():
        assert deployment.work_pool_name == "mlpipe"
        assert deployment.parameters["config"]["mlflow"]["tracking_uri"] == "sqlite:///shared/mlflow.db"
    # what a worker does with the stored parameters: the flow gets the file's workspace as its config
    bound = drift_check.validate_parameters(deployments["drift-check"].parameters)
    assert bound["config"].mlflow.tracking_uri == "sqlite:///shared/mlflow.db"


def test_deploy_validates_every_section_before_registering_anything(tmp_path: Path):
    config = tmp_path / "broken.yaml"
    config.write_text(
        PROJECT_FILE.replace("one-file", "half-done").replace("  window_days: 7\n", "  window_days: -1\n")
    )
    result = run_cli("deploy", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "section 'monitoring'" in result.stderr and "window_days" in result.stderr
    with get_client(sync_client=True) as client:
        names = {deployment.name for deployment in client.read_deployments()}
    assert not any(name.startswith("half-done") for name in names)

    config.write_text("mlflow: {tracking_uri: sqlite:///x.db}\n")
    result = run_cli("deploy", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "nothing to deploy" in result.stderr
