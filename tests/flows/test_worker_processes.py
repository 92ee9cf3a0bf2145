"""A flow's Dask worker processes: one TLS context for Prefect's API clients, and no stack sampling."""

import dask
import distributed
import pytest
from prefect.client.orchestration import SyncPrefectClient
from prefect.context import FlowRunContext

from mlpipe.blocks import DaskCluster, WorkspaceConfig
from mlpipe.flows.common import open_workspace, pipeline_flow
from mlpipe.flows.runner import WorkspaceTaskRunner

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
