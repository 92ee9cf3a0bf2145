"""A password planted in every credential a run uses appears nowhere a person or a tool can read afterwards.

The run is `mlpipe sweep` as a user starts it, against real servers on 127.0.0.1: a Redis that
refuses the study storage without its password, an `mlflow server` (which does not check the
basic-auth password it is sent: MLflow's auth app is not installed), a datastore whose Secret
holds a token option, and the session's Prefect server holding the three Secret blocks.
"""

import datetime as dt
import json
import time
from pathlib import Path

import pytest
import yaml

from tests.pipeline import run_cli
from tests.servers import mlflow_server, redis_server

pytestmark = pytest.mark.e2e

SECRETS = {"mlflow": "planted-mlflow-7Qx2", "studies": "planted-redis-4Kd8", "datastore": "planted-store-9Zw5"}


def test_a_planted_password_appears_nowhere_after_a_sweep(tmp_path: Path, demo_csv: Path, prefect_api: str):
    from prefect.blocks.system import Secret

    Secret(value=SECRETS["mlflow"]).save("leak-mlflow", overwrite=True)
    Secret(value=SECRETS["studies"]).save("leak-studies", overwrite=True)
    Secret(value=json.dumps({"planted_token": SECRETS["datastore"]})).save("leak-store", overwrite=True)
    space = tmp_path / "space.yaml"
    space.write_text(
        yaml.safe_dump({"random_forest": {"n_estimators": 10, "max_depth": {"type": "int", "low": 2, "high": 4}}})
    )
    with redis_server(SECRETS["studies"], tmp_path) as redis_url, mlflow_server(tmp_path / "mlflow") as mlflow_url:
        config = tmp_path / "project.yaml"
        sections = {
            "mlflow": {"tracking_uri": mlflow_url.replace("://", "://alice@"), "secret_name": "leak-mlflow"},
            "studies": {"url": redis_url, "secret_name": "leak-studies"},
            "datastore": {"url": str(tmp_path / "store"), "secret_name": "leak-store"},
        }
        config.write_text(yaml.safe_dump(sections))
        started = dt.datetime.now(dt.UTC)
        args = ["--data", str(demo_csv), "--target", "default", "--name", "leak-check", "--exclude", "application_id"]
        result = run_cli(
            "sweep", *args, "--space", str(space), "--max-trials", "2", "--config", str(config), cwd=tmp_path
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert "leak-check v1" in result.stdout
        readable = {"CLI stdout": result.stdout, "CLI stderr": result.stderr}
        readable |= stored_records(started)
        readable |= mlflow_records(mlflow_url)
    readable |= {str(path): path.read_bytes().decode("latin-1") for path in tmp_path.rglob("*") if path.is_file()}

    assert len(readable) > 20 and "prefect.flow-run.Completed" in readable["events"]  # the places were read
    leaks = {name: [place for place, text in readable.items() if secret in text] for name, secret in SECRETS.items()}
    assert leaks == {name: [] for name in SECRETS}


def stored_records(since: dt.datetime) -> dict[str, str]:
    """`prefect_records` once the sweep's last event is stored (the server persists events in batches)."""
    deadline = time.monotonic() + 60
    while True:
        records = prefect_records(since)
        if "prefect.flow-run.Completed" in records["events"] or time.monotonic() > deadline:
            return records
        time.sleep(1)


def prefect_records(since: dt.datetime) -> dict[str, str]:
    """What the Prefect server keeps of the runs since `since`: parameters, logs, artifacts, task runs, events."""
    from prefect import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )
    from prefect.events.filters import EventFilter, EventOccurredFilter

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=since)))
        ids = [run.id for run in runs]
        logs = client.read_logs(log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids)), limit=200)
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids)))
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": ids}))
        page = client.read_events(EventFilter(occurred=EventOccurredFilter(since=since)), limit=50)
        events = list(page.events)
        while page.next_page is not None:
            page = client.read_events_page(page.next_page)
            events += page.events
    return {
        "flow-run parameters": json.dumps([run.parameters for run in runs]),
        "flow runs": json.dumps([run.model_dump(mode="json") for run in runs]),
        "logs": "\n".join(log.message for log in logs),
        "artifacts": json.dumps([artifact.model_dump(mode="json") for artifact in artifacts]),
        "task runs": json.dumps([task.model_dump(mode="json") for task in task_runs]),
        "events": json.dumps([event.model_dump(mode="json") for event in events]),
    }


def mlflow_records(url: str) -> dict[str, str]:
    """Every run's tags and params, and every model version's tags, on the MLflow server."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=url, registry_uri=url)
    experiments = [experiment.experiment_id for experiment in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=500)
    versions = client.search_model_versions("name = 'leak-check'")
    return {
        "MLflow run tags and params": json.dumps([[run.data.tags, run.data.params] for run in runs]),
        "MLflow model versions": json.dumps([[version.tags, version.source, version.run_link] for version in versions]),
    }
