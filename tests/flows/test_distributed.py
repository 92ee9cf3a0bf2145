"""The flows on real servers, as a team runs them: a `prefect server` and an `mlflow server` on PostgreSQL, a
`dask scheduler` with separate `dask worker` processes (one advertising `GPU=1`), all on 127.0.0.1.

Training and batch scoring land in the servers and run on the workers; parallel trials lose no
run, metric or task run; GPU-annotated work reaches only the GPU worker of an existing scheduler
(xgboost then gets `device="cuda"`: with no GPU here it falls back to the CPU, the routing and the
parameter are what is checked); a worker killed mid-sweep costs nothing but time, and one killed
during distributed training fails that fit only: the flow still registers one model.
"""

import json
import subprocess
import threading
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from distributed import Client
from optuna.trial import TrialState
from prefect import get_client
from prefect.settings import PREFECT_API_URL, temporary_settings

from mlpipe.blocks import DaskCluster, Datastore, MlflowConnection, WorkspaceConfig
from mlpipe.demo_data import credit_default
from mlpipe.flows.scoring import ScoringParams, batch_scoring
from mlpipe.tasks.model.distributed import COLLECTIVE_TIMEOUT
from mlpipe.tasks.sweep.space import parse_space
from tests import servers
from tests.pipeline import max_overlap, model_versions, run_sweep, run_training, study_trials, task_runs, wait_for

pytestmark = pytest.mark.e2e

EXCLUDE = ["application_id", "applied_at"]
LINEAR = {"linear": {"C": {"type": "loguniform", "low": 0.01, "high": 10}}}
RANDOM = {"sampler": "random", "pruner": {"kind": "none"}}


@dataclass
class Servers:
    prefect: str
    mlflow: str
    scheduler: str
    cpu_worker: str
    gpu_worker: str
    folder: Path
    workspace: WorkspaceConfig
    dask: Client

    def ran_on(self, prefix: str) -> dict[str, int]:
        """Worker address → how many tasks whose key starts with `prefix` it finished (the scheduler's record)."""
        counts: dict[str, int] = {}
        for record in self.dask.get_task_stream():
            if str(record["key"]).startswith(prefix):
                counts[record["worker"]] = counts.get(record["worker"], 0) + 1
        return counts


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Servers]:
    folder = tmp_path_factory.mktemp("distributed")
    (folder / "prefect").mkdir()
    with (
        servers.postgres_databases("prefect", "mlflow") as databases,
        servers.together(
            servers.prefect_server(folder / "prefect", databases["prefect"]),
            servers.mlflow_server(folder / "mlflow", database_url=databases["mlflow"]),
            servers.dask_scheduler(folder),
        ) as ((prefect, _), mlflow, scheduler),
    ):
        env = {"PREFECT_API_URL": prefect, COLLECTIVE_TIMEOUT: "20"}  # a lost peer fails a fit in 20 s
        with (
            servers.together(
                servers.dask_worker(scheduler, "cpu", folder, env, nthreads=2),
                servers.dask_worker(scheduler, "gpu", folder, env, nthreads=2, resources="GPU=1"),
            ) as ((cpu, _), (gpu, _)),
            Client(scheduler) as dask,
        ):
            dask.wait_for_workers(2, timeout=60)
            dask.get_task_stream()  # the scheduler records every task from now on
            workspace = WorkspaceConfig(
                mlflow=MlflowConnection(tracking_uri=mlflow),
                datastore=Datastore(url=str(folder / "shared-datastore")),  # one disk stands for a shared store
                cluster=DaskCluster(address=scheduler),
            )
            yield Servers(prefect, mlflow, scheduler, cpu, gpu, folder, workspace, dask)


@pytest.fixture(autouse=True)
def _report_to_the_prefect_server(cluster: Servers) -> Iterator[None]:
    with temporary_settings({PREFECT_API_URL: cluster.prefect}):
        yield


@pytest.fixture(scope="module")
def credit_parquet(cluster: Servers) -> Path:
    path = cluster.folder / "credit.parquet"
    credit_default(rows=3_000, seed=1).to_parquet(path, index=False)
    return path


def mlflow_get(server: str, endpoint: str, **query: str) -> dict[str, Any]:
    with urllib.request.urlopen(f"{server}/api/2.0/mlflow/{endpoint}?{urllib.parse.urlencode(query)}") as answer:
        return dict(json.load(answer))


def mlflow_child_runs(server: str, experiment_id: str, parent_run_id: str) -> list[dict[str, Any]]:
    body = {"experiment_ids": [experiment_id], "filter": f"tags.mlflow.parentRunId = '{parent_run_id}'"}
    request = urllib.request.Request(
        f"{server}/api/2.0/mlflow/runs/search", json.dumps({**body, "max_results": 1000}).encode(), method="POST"
    )
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request) as answer:
        return list(json.load(answer).get("runs", []))


def kill_when(condition: Callable[[], bool], process: subprocess.Popen[bytes], what: str) -> threading.Thread:
    """A started thread that kills `process` as soon as `condition` holds (waiting at most 240 s for `what`)."""

    def kill() -> None:
        wait_for(condition, 240, what)
        process.kill()

    killer = threading.Thread(target=kill, daemon=True)
    killer.start()
    return killer


def params_of(run: dict[str, Any]) -> dict[str, str]:
    return {p["key"]: p["value"] for p in run["data"].get("params", [])}


def metrics_of(run: dict[str, Any]) -> dict[str, float]:
    return {m["key"]: m["value"] for m in run["data"].get("metrics", [])}


def prefect_task_runs(flow_run_id: Any, expected: int) -> dict[str, list[str]]:
    """Task name → states of its runs in the flow run, once the server has `expected` of them settled."""
    names: dict[str, list[str]] = {}
    for run in task_runs(flow_run_id, expected, settle_seconds=60):
        names.setdefault(run.name.rsplit("-", 1)[0], []).append(run.state.name if run.state else "none")
    return names


def flow_run_state(flow_run_id: Any) -> str:
    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
    return run.state.name if run.state else "none"


def test_training_and_batch_scoring_run_on_the_workers_and_land_in_the_servers(
    cluster: Servers, credit_parquet: Path, tmp_path: Path
):
    name = f"dist-{uuid.uuid4().hex[:6]}"
    outcome = run_training(cluster.workspace, data=str(credit_parquet), target="default", name=name, exclude=EXCLUDE)
    assert outcome.error is None, outcome.error
    summary = outcome.summary
    assert set(outcome.task_states.values()) <= {"Completed"}, outcome.task_states  # this server, fresh: no cache

    # MLflow server (on PostgreSQL): the run with its metrics, the registered version.
    run = mlflow_get(cluster.mlflow, "runs/get", run_id=summary.run_id)["run"]
    assert run["info"]["status"] == "FINISHED" and metrics_of(run)["train_rows"] > 0
    versions = mlflow_get(cluster.mlflow, "registered-models/get", name=name)["registered_model"]["latest_versions"]
    assert [v["version"] for v in versions] == [summary.version] and versions[0]["run_id"] == summary.run_id
    assert params_of(run).get("device") is None  # device cpu by default: xgboost's own default

    # The scheduler ran every step on the two workers; cached results went to the shared datastore.
    ran = {step: cluster.ran_on(step) for step in ("ingest", "validate", "split", "train", "evaluate")}
    assert all(ran.values()) and {w for counts in ran.values() for w in counts} <= {
        cluster.cpu_worker,
        cluster.gpu_worker,
    }
    assert list((cluster.folder / "shared-datastore" / "prefect-results").iterdir())

    # Batch scoring of the registered version, its batches as plain Dask tasks on the same workers.
    inputs = tmp_path / "in"
    inputs.mkdir()
    for index in range(3):
        frame = credit_default(rows=2_000, seed=20 + index)
        frame["application_id"] = [f"app-{index}-{row}" for row in range(len(frame))]
        frame.to_parquet(inputs / f"part-{index}.parquet", index=False, row_group_size=500)
    params = ScoringParams(
        model=f"{name}/{summary.version}",
        input=str(inputs),
        output=str(tmp_path / "out"),
        mini_batch_size=500,
        passthrough=["application_id"],
    )
    state = batch_scoring(params, cluster.workspace, return_state=True)
    scoring = state.result()
    assert scoring.manifest.rows_out == 6_000 and scoring.manifest.batches == 12
    scored = pd.read_parquet(tmp_path / "out")
    assert len(scored) == 6_000 and scored["application_id"].is_unique
    batches = cluster.ran_on(f"score-{scoring.manifest.run_key}")
    assert sum(batches.values()) == 12 and set(batches) <= {cluster.cpu_worker, cluster.gpu_worker}, batches

    # The Prefect server (on PostgreSQL) has both flow runs and their task runs, finished.
    training_run = flow_run_of(run)
    assert flow_run_state(training_run) == "Completed"
    training_tasks = prefect_task_runs(training_run, expected=len(outcome.task_states))
    assert {"ingest", "validate", "split", "train", "evaluate", "gate", "register"} <= set(training_tasks)
    assert flow_run_state(state.state_details.flow_run_id) == "Completed"


def flow_run_of(run: dict[str, Any]) -> str:
    """The Prefect flow run that logged an MLflow run (the lineage tag every mlpipe run carries)."""
    tags = {t["key"]: t["value"] for t in run["data"].get("tags", [])}
    return tags["mlpipe.prefect_flow_run_id"]


def test_trials_logging_four_at_once_on_postgres_lose_no_run_metric_or_task_run(cluster: Servers, credit_parquet: Path):
    name = f"par-{uuid.uuid4().hex[:6]}"
    space = parse_space(LINEAR, "t")
    outcome = run_sweep(
        cluster.workspace,
        data=str(credit_parquet),
        name=name,
        space=space,
        max_trials=8,
        max_concurrent=4,
        study_name=name,
        study=RANDOM,
    )
    assert outcome.error is None, outcome.error
    summary = outcome.summary
    trials = study_trials(cluster.workspace, name)
    assert len(trials) == 8 and max_overlap([(t.user_attrs["started"], t.user_attrs["finished"]) for t in trials]) > 1
    assert {t.user_attrs["worker"] for t in trials} == {cluster.cpu_worker, cluster.gpu_worker}  # both hosts' share

    parent = mlflow_get(cluster.mlflow, "runs/get", run_id=summary.parent_run_id)["run"]
    children = mlflow_child_runs(cluster.mlflow, parent["info"]["experiment_id"], summary.parent_run_id)
    trial_runs = [r for r in children if r["info"]["run_name"].startswith("trial-")]
    metric = f"final_{summary.sweep.metric}"
    assert sorted(r["info"]["run_name"] for r in trial_runs) == [f"trial-{n:03d}" for n in range(8)]
    assert all(r["info"]["status"] == "FINISHED" and metric in metrics_of(r) for r in trial_runs), trial_runs
    assert {row.trial: row.value for row in summary.sweep.leaderboard} == {
        int(r["info"]["run_name"][-3:]): metrics_of(r)[metric] for r in trial_runs
    }

    sweep_run = flow_run_of(parent)
    assert flow_run_state(sweep_run) == "Completed"
    tasks = prefect_task_runs(sweep_run, expected=8)
    assert tasks["run-trial"] == ["Completed"] * 8, tasks


def test_gpu_annotated_trials_and_training_reach_only_the_gpu_worker_and_xgboost_gets_cuda(
    cluster: Servers, credit_parquet: Path
):
    before = {prefix: cluster.ran_on(prefix) for prefix in ("run_trial", "train")}
    name = f"gpu-{uuid.uuid4().hex[:6]}"
    space = parse_space(
        {"xgboost": {"n_estimators": 20, "learning_rate": {"type": "loguniform", "low": 0.01, "high": 0.3}}}, "t"
    )
    # device auto: the scheduler has a worker advertising GPU, so xgboost goes there with device cuda.
    outcome = run_sweep(
        cluster.workspace,
        data=str(credit_parquet),
        name=name,
        space=space,
        max_trials=3,
        study_name=name,
        study=RANDOM,
        device="auto",
    )
    assert outcome.error is None, outcome.error
    summary = outcome.summary
    for prefix, counts in before.items():  # the scheduler's record: the other worker got none of them
        now = cluster.ran_on(prefix)
        added = {worker: now[worker] - counts.get(worker, 0) for worker in now if now[worker] > counts.get(worker, 0)}
        assert set(added) == {cluster.gpu_worker}, (prefix, added, cluster.cpu_worker)
    trials = study_trials(cluster.workspace, name)
    assert {t.user_attrs["worker"] for t in trials} == {cluster.gpu_worker}
    assert max_overlap([(t.user_attrs["started"], t.user_attrs["finished"]) for t in trials]) == 1  # one GPU

    parent = mlflow_get(cluster.mlflow, "runs/get", run_id=summary.parent_run_id)["run"]
    children = mlflow_child_runs(cluster.mlflow, parent["info"]["experiment_id"], summary.parent_run_id)
    assert len(children) == 4  # three trials and the winner, retrained
    assert all(params_of(run)["device"] == "cuda" for run in children), [params_of(r) for r in children]
    winner = mlflow_get(cluster.mlflow, "runs/get", run_id=summary.training.run_id)["run"]
    assert params_of(winner)["device"] == "cuda"


def test_a_worker_killed_mid_sweep_the_sweep_completes_every_trial_once(
    cluster: Servers, credit_parquet: Path, tmp_path: Path
):
    name = f"kill-{uuid.uuid4().hex[:6]}"
    space = parse_space({"xgboost": {"n_estimators": 300, "max_depth": {"type": "int", "low": 6, "high": 8}}}, "t")
    env = {"PREFECT_API_URL": cluster.prefect}
    with servers.dask_worker(cluster.scheduler, "doomed", tmp_path, env) as (doomed, process):
        cluster.dask.wait_for_workers(3, timeout=60)
        tracking = cluster.workspace.resolve().mlflow.client()

        def running_a_trial() -> bool:  # its MLflow run started, not finished
            experiment = tracking.get_experiment_by_name(name)
            running = f"tags.`mlpipe.worker` = '{doomed}' and attributes.status = 'RUNNING'"
            return experiment is not None and bool(tracking.search_runs([experiment.experiment_id], running))

        killer = kill_when(running_a_trial, process, "a trial running on the doomed worker")
        outcome = run_sweep(
            cluster.workspace,
            data=str(credit_parquet),
            name=name,
            space=space,
            max_trials=6,
            max_concurrent=5,
            study_name=name,
            study=RANDOM,
        )
        killer.join(timeout=5)
    assert process.poll() is not None, "the worker was not killed mid-trial"
    assert outcome.error is None, outcome.error
    trials = study_trials(cluster.workspace, name)
    assert sorted(t.number for t in trials) == list(range(6))
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state) for t in trials]
    assert [row.state for row in outcome.summary.sweep.leaderboard] == ["complete"] * 6

    # Each trial has one finished MLflow run; the killed attempt's run is closed as failed, saying why.
    parent = mlflow_get(cluster.mlflow, "runs/get", run_id=outcome.summary.parent_run_id)["run"]
    children = mlflow_child_runs(cluster.mlflow, parent["info"]["experiment_id"], outcome.summary.parent_run_id)
    trial_runs = [r for r in children if r["info"]["run_name"].startswith("trial-")]
    finished = sorted(r["info"]["run_name"] for r in trial_runs if r["info"]["status"] == "FINISHED")
    assert finished == [f"trial-{n:03d}" for n in range(6)]
    lost = [r for r in trial_runs if r["info"]["status"] != "FINISHED"]
    assert len(lost) == 1 and lost[0]["info"]["status"] == "FAILED", [r["info"] for r in lost]
    lost_tags = {t["key"]: t["value"] for t in lost[0]["data"]["tags"]}
    assert "worker running this trial was lost" in lost_tags["mlpipe.error"]


def test_a_worker_killed_during_distributed_training_the_flow_completes_with_one_model(
    cluster: Servers, tmp_path: Path
):
    data = tmp_path / "loans"
    data.mkdir()
    frame = credit_default(rows=40_000, seed=3)
    for index in range(8):
        frame.iloc[index * 5_000 : (index + 1) * 5_000].to_parquet(data / f"part-{index}.parquet")
    name = f"spread-kill-{uuid.uuid4().hex[:6]}"
    env = {"PREFECT_API_URL": cluster.prefect, COLLECTIVE_TIMEOUT: "20"}
    with servers.dask_worker(cluster.scheduler, "doomed-xgb", tmp_path, env) as (doomed, process):
        cluster.dask.wait_for_workers(3, timeout=60)

        def training_on_the_doomed_worker() -> bool:
            return any(str(key).startswith("_train_here") for key in cluster.dask.processing().get(doomed, ()))

        killer = kill_when(training_on_the_doomed_worker, process, "distributed training on the doomed worker")
        outcome = run_training(
            cluster.workspace,
            data=str(data),
            target="default",
            name=name,
            exclude=EXCLUDE,
            model={"distributed": True, "params": {"n_estimators": 300, "max_depth": 8}},
        )
        killer.join(timeout=5)
    assert process.poll() is not None, "the worker was not killed mid-training"
    assert outcome.error is None, outcome.error
    assert outcome.summary is not None and outcome.summary.metrics["roc_auc"] > 0.7
    assert len(model_versions(cluster.workspace, name)) == 1
