"""The closed loop on a real `prefect server` and a real worker: drift → event → exactly one triggered retraining."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId, FlowRunFilter
from prefect.settings import PREFECT_API_URL, temporary_settings

from mlpipe.blocks import WorkspaceConfig
from mlpipe.demo_data import credit_default
from mlpipe.deployments.monitoring import MonitoringPlan, deploy_monitoring
from mlpipe.tasks.events import DRIFT_CHECKED, DRIFT_DETECTED, model_resource_id
from mlpipe.tasks.registry.aliases import champion_version
from tests.pipeline import model_events, run_cli, run_training
from tests.servers import mlpipe_worker

pytestmark = pytest.mark.e2e

MODEL = "loop-e2e"
BURST = """
import prefect.events

model = {{"prefect.resource.id": "{resource}"}}
for _ in range(4):  # a burst of the same alarm, seconds after the first
    prefect.events.emit_event("{event}", resource=model, payload={{}})
"""


@contextmanager
def served(prefect_server: str, tracking_uri: str, folder: Path) -> Iterator[dict[str, str]]:
    """This process pointed at the real server, and `mlpipe worker` (a process worker on the mlpipe pool) running.

    Yields the environment for processes that must talk to that server (this process's event
    client stays bound to the test server, so events are sent from processes of their own).
    """
    env = {**os.environ, "PREFECT_API_URL": prefect_server, "MLFLOW_TRACKING_URI": tracking_uri}
    with temporary_settings({PREFECT_API_URL: prefect_server}), mlpipe_worker(folder, env):
        yield env


def test_drift_triggers_exactly_one_retraining_that_promotes_a_better_model(
    prefect_server_api: str, workspace: WorkspaceConfig, tmp_path: Path
):
    original, drifted = tmp_path / "original.parquet", tmp_path / "drifted.parquet"
    fresh = tmp_path / "fresh.parquet"
    credit_default(rows=4_000, seed=90).to_parquet(original, index=False)
    credit_default(rows=4_000, seed=89).to_parquet(fresh, index=False)
    beyond_training(credit_default(rows=4_000, seed=91, drift=1.0)).to_parquet(drifted, index=False)
    first = run_training(workspace, data=str(original), target="default", name=MODEL, exclude=["application_id"])
    assert first.error is None, first.error
    tracking = workspace.resolve().mlflow

    with served(prefect_server_api, tracking.tracking_uri or "", tmp_path) as env:
        plan = MonitoringPlan(
            model=MODEL,
            target="default",
            current=str(drifted),
            recent=str(drifted),
            history=str(original),
            exclude=["application_id"],
            debounce_minutes=10,
        )
        ids = deploy_monitoring(plan)
        clean = run_cli("drift", "--model", MODEL, "--current", str(fresh), cwd=tmp_path, extra_env=env)
        assert clean.returncode == 0 and "no dataset drift" in clean.stdout, clean.stderr[-3000:]
        assert model_events(MODEL, DRIFT_CHECKED, first.summary.version)  # the check reached this server
        assert wait_for_runs(ids["retraining"], bool, 10) == []  # undrifted data: nothing retrains
        check = run_cli("drift", "--model", MODEL, "--current", str(drifted), cwd=tmp_path, extra_env=env)
        assert check.returncode == 0 and "drift detected" in check.stdout, check.stderr[-3000:]
        script = BURST.format(resource=model_resource_id(MODEL), event=DRIFT_DETECTED)
        burst = subprocess.run([sys.executable, "-c", script], env=env, timeout=120)
        assert burst.returncode == 0
        runs = wait_for_runs(ids["retraining"], any_finished, 300)
        time.sleep(10)  # time for any further (wrong) trigger firing to show up
        runs = wait_for_runs(ids["retraining"], lambda runs: True, 5)
    log = tmp_path / "worker.log"
    assert len(runs) == 1, [(r.name, r.state_name) for r in runs]
    run = runs[0]
    assert run.state_name == "Completed", log.read_text()[-4000:]
    assert run.parameters["params"]["reason"] == DRIFT_DETECTED  # started by the trigger, with the event's name
    champion = champion_version(MODEL, tracking)
    assert champion != first.summary.version  # the retrained model was better on the drifted holdout


def beyond_training(frame: pd.DataFrame) -> pd.DataFrame:
    """Drift that leaves what training saw: debt-to-income up to 3x its largest training value, and new regions.

    Inferred contracts once held such data as invalid, so the loop refused the very data it had to learn from.
    """
    region = frame["region"].where(frame.index % 4 != 0, "islands")  # a quarter in a region never seen
    return frame.assign(debt_to_income=frame["debt_to_income"] * 3, region=region)


def any_finished(runs: list) -> bool:
    return any(run.state and run.state.is_final() for run in runs)


def wait_for_runs(deployment_id: object, done: object, seconds: float) -> list:
    deadline = time.monotonic() + seconds
    while True:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(),
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment_id])),
            )
        if done(runs) or time.monotonic() > deadline:  # type: ignore[operator]
            return runs
        time.sleep(1)


PERFORMANCE_CHECK = """
from mlpipe.blocks import WorkspaceConfig
from mlpipe.flows.performance import PerformanceParams, performance_check

params = PerformanceParams(model="{model}", predictions="{predictions}", labels="{labels}",
                           id_column="application_id", label_column="default", metric="accuracy", threshold=0.88)
print(performance_check(params, WorkspaceConfig()).degraded)
"""


def test_degraded_accuracy_on_late_labels_triggers_retraining(
    prefect_server_api: str, workspace: WorkspaceConfig, tmp_path: Path
):
    model = "loop-performance"
    original, recent = tmp_path / "original.parquet", tmp_path / "recent.parquet"
    credit_default(rows=4_000, seed=92).to_parquet(original, index=False)
    fresh = credit_default(rows=4_000, seed=93, drift=1.0)
    fresh.to_parquet(recent, index=False)
    first = run_training(workspace, data=str(original), target="default", name=model, exclude=["application_id"])
    assert first.error is None, first.error
    tracking = workspace.resolve().mlflow
    with tracking.session():
        scored = mlflow.pyfunc.load_model(f"models:/{model}@champion").predict(fresh)
    scored["application_id"] = fresh["application_id"]
    scored.to_parquet(tmp_path / "predictions.parquet", index=False)
    # Feedback that disagrees with most predictions: accuracy far below 0.88.
    fresh[["application_id"]].assign(default=1 - scored["prediction"]).to_parquet(tmp_path / "labels.parquet")

    with served(prefect_server_api, tracking.tracking_uri or "", tmp_path) as env:
        plan = MonitoringPlan(
            model=model,
            target="default",
            current=str(recent),
            recent=str(recent),
            history=str(original),
            exclude=["application_id"],
        )
        ids = deploy_monitoring(plan)
        script = PERFORMANCE_CHECK.format(
            model=model, predictions=tmp_path / "predictions.parquet", labels=tmp_path / "labels.parquet"
        )
        check = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300)
        assert check.returncode == 0 and check.stdout.strip().endswith("True"), check.stderr[-3000:]
        runs = wait_for_runs(ids["retraining"], any_finished, 300)
    log = tmp_path / "worker.log"
    assert len(runs) == 1 and runs[0].state_name == "Completed", log.read_text()[-4000:]
    assert runs[0].parameters["params"]["reason"] == "mlpipe.performance.degraded"
