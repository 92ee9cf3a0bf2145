"""Prefect's API clients on a flow's Dask workers share one TLS context instead of building one per client."""

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


@pipeline_flow("worker-tls")
def worker_tls(workspace: WorkspaceConfig) -> list[bool]:
    open_workspace(workspace)
    context = FlowRunContext.get()
    assert context is not None and isinstance(context.task_runner, WorkspaceTaskRunner)
    return list(context.task_runner.client.run(two_clients_share_a_tls_context).values())


def test_a_flows_worker_processes_build_one_tls_context_for_their_api_clients():
    workspace = WorkspaceConfig(cluster=DaskCluster(n_workers=2, threads_per_worker=1, processes=True))
    assert worker_tls(workspace) == [True, True]


def test_a_worker_outside_mlpipe_builds_one_per_client():
    """The check above can fail: a plain worker process builds a context per client, as Prefect does."""
    with (
        distributed.LocalCluster(n_workers=1, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        assert list(client.run(two_clients_share_a_tls_context).values()) == [False]
