"""The closed loop's deployments as registered on a Prefect server: schedules, event triggers, concurrency."""

from pathlib import Path

from prefect.client.orchestration import get_client

from deployments.monitoring import MonitoringPlan, deploy_monitoring
from tests.pipeline import run_cli


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


def test_deploy_monitoring_command_reads_its_config_section(tmp_path: Path):
    config = tmp_path / "loop.yaml"
    config.write_text(
        "monitoring:\n  model: cli-loop\n  target: default\n  current: /lake/new/\n  recent: /lake/recent/\n"
    )
    result = run_cli("deploy", "monitoring", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "drift-check:" in result.stdout and "retraining:" in result.stdout
    assert "performance-check" not in result.stdout  # no labels configured

    config.write_text("monitoring:\n  model: cli-loop\n  target: default\n  current: /lake/new/\n")
    result = run_cli("deploy", "monitoring", "--config", str(config), cwd=tmp_path)
    assert result.returncode == 1 and "recent" in result.stderr
