"""A flow's Dask worker processes: one TLS context for Prefect's API clients, no stack sampling, their allocator."""

import logging
from pathlib import Path

import dask
import distributed
import pytest
from prefect import task
from prefect.client.orchestration import SyncPrefectClient
from prefect.context import FlowRunContext

from mlpipe.blocks import DaskCluster, WorkspaceConfig
from mlpipe.flows import step_reports
from mlpipe.flows.common import open_workspace, pipeline_flow
from mlpipe.flows.drift import drift_check
from mlpipe.flows.performance import performance_check
from mlpipe.flows.retraining import retraining
from mlpipe.flows.runner import MALLOC_TRIM_THRESHOLD, WorkspaceTaskRunner
from mlpipe.flows.scoring import batch_scoring
from mlpipe.flows.sweep import sweep
from mlpipe.flows.training import training

pytestmark = pytest.mark.flow


def two_clients_share_a_tls_context() -> bool:
    """What a task run does on a worker: make two API clients (here for an address nothing listens on)."""
    first, second = (SyncPrefectClient("https://127.0.0.1:9/api") for _ in range(2))
    return first._client._transport._pool._ssl_context is second._client._transport._pool._ssl_context


def samples_stacks(dask_worker: distributed.Worker) -> bool:
    """Whether the worker runs Dask's statistical profiler (for its dashboard's Profile page)."""
    return "profile" in dask_worker.periodic_callbacks


@pipeline_flow("worker-processes")
def on_the_workers(workspace: WorkspaceConfig) -> tuple[list[bool], list[bool]]:
    """Each worker's answers: do its API clients share a TLS context, does it sample stacks."""
    open_workspace(workspace)
    context = FlowRunContext.get()
    assert context is not None and isinstance(context.task_runner, WorkspaceTaskRunner)
    client = context.task_runner.client
    return list(client.run(two_clients_share_a_tls_context).values()), list(client.run(samples_stacks).values())


PROCESS_WORKERS = WorkspaceConfig(cluster=DaskCluster(n_workers=2, threads_per_worker=1, processes=True))


def test_a_flows_worker_processes_build_one_tls_context_and_do_not_sample_stacks():
    assert on_the_workers(PROCESS_WORKERS) == ([True, True], [False, False])


@task
def double(x: int) -> int:
    return 2 * x


@task
def refuse(x: int) -> int:
    raise ValueError(f"no {x}")


@pipeline_flow("steps-elsewhere")
def two_steps(workspace: WorkspaceConfig) -> int:
    open_workspace(workspace)
    return double.submit(2).result() + refuse.submit(3).result()


class Collected(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.ends: list[tuple[str, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.ends.append((record.step, record.state))  # type: ignore[attr-defined]


@pytest.mark.parametrize("processes", [True, False])
def test_the_flows_process_tells_how_each_step_on_a_worker_process_ended_once(processes: bool):
    """Prefect logs a step's end where it ran: on a worker process a command showed no line for it.
    On threaded workers Prefect's own records show it, so nothing more is told."""
    collected = Collected()
    step_reports.LOGGER.addHandler(collected)
    try:
        cluster = PROCESS_WORKERS.cluster.model_copy(update={"processes": processes})
        state = two_steps(WorkspaceConfig(cluster=cluster), return_state=True)
    finally:
        step_reports.LOGGER.removeHandler(collected)
    assert state.is_failed()
    step_reports.wait_until_told(timeout=10)
    assert sorted(collected.ends) == ([("double", "Completed"), ("refuse", "Failed")] if processes else [])


def test_a_users_dask_setting_has_the_workers_sample_stacks_again():
    """The stack check above can fail: Dask's own setting, passed to the workers, turns the profiler on."""
    with dask.config.set({"distributed.worker.profile.enabled": True}):
        assert on_the_workers(PROCESS_WORKERS)[1] == [True, True]


def test_a_worker_outside_mlpipe_builds_one_per_client():
    """The TLS check above can fail: a plain worker process builds a context per client, as Prefect does."""
    with (
        distributed.LocalCluster(n_workers=1, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        assert list(client.run(two_clients_share_a_tls_context).values()) == [False]


def trim_threshold_at_start() -> str | None:
    """The worker's `MALLOC_TRIM_THRESHOLD_` as the process started with it: what glibc read, not `os.environ` now."""
    variables = Path("/proc/self/environ").read_bytes().split(b"\0")
    values = [v.split(b"=", 1)[1].decode() for v in variables if v.startswith(MALLOC_TRIM_THRESHOLD.encode() + b"=")]
    return values[0] if values else None


def thresholds(runner_default: bool, cluster: DaskCluster) -> list[str | None]:
    """Each worker's start-up threshold, in a flow whose runner has `runner_default` on `cluster`."""

    @pipeline_flow("worker-allocator", trim_worker_memory=runner_default)
    def on_the_workers(workspace: WorkspaceConfig) -> list[str | None]:
        open_workspace(workspace)
        context = FlowRunContext.get()
        assert context is not None and isinstance(context.task_runner, WorkspaceTaskRunner)
        return list(context.task_runner.client.run(trim_threshold_at_start).values())

    return on_the_workers(WorkspaceConfig(cluster=cluster))


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="reads a process's start-up environment")
def test_a_flow_that_asks_for_it_starts_its_workers_without_dasks_trim_threshold_and_the_cluster_setting_wins():
    """Dask's nannies set the threshold (first run), and leave it in this process's environment after;
    a flow that keeps glibc's own thresholds starts its workers without it all the same."""
    workers = PROCESS_WORKERS.cluster
    assert thresholds(True, workers) == ["65536", "65536"]
    assert thresholds(False, workers) == [None, None]
    assert thresholds(False, workers.model_copy(update={"trim_worker_memory": True})) == ["65536", "65536"]
    assert thresholds(True, workers.model_copy(update={"trim_worker_memory": False})) == [None, None]


def test_the_sweep_keeps_glibcs_thresholds_for_its_trials_and_other_flows_keep_dasks():
    """As each flow run gets its runner: a copy of the flow's (a sweep's winner is trained by the training flow's
    steps, on the sweep's workers; a training, a retraining or a scoring run holds whole partitions)."""
    assert sweep.task_runner.duplicate().trim_worker_memory is False
    others = (training, retraining, batch_scoring, drift_check, performance_check, on_the_workers)
    assert {flow.name: flow.task_runner.duplicate().trim_worker_memory for flow in others} == {
        flow.name: True for flow in others
    }
