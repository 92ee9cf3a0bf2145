"""The LocalCluster a flow starts listens on 127.0.0.1 only, and the dashboard link it reports is that address."""

import urllib.request
from urllib.parse import urlsplit

import psutil
import pytest
from prefect.context import FlowRunContext

from mlpipe.blocks import DaskCluster, WorkspaceConfig
from mlpipe.flows.common import open_workspace, pipeline_flow
from mlpipe.flows.runner import WorkspaceTaskRunner

pytestmark = pytest.mark.flow


def listening() -> set[tuple[str, int]]:
    """The TCP addresses this process and its children listen on."""
    me = psutil.Process()
    sockets = [s for p in (me, *me.children(recursive=True)) for s in p.net_connections("tcp")]
    return {(s.laddr.ip, s.laddr.port) for s in sockets if s.status == psutil.CONN_LISTEN}


@pipeline_flow("cluster-sockets")
def cluster_sockets(workspace: WorkspaceConfig) -> tuple[str, list[tuple[str, int]], bytes]:
    """The dashboard link the flow's cluster reports, the sockets it opened, and what the link's server answers."""
    before = listening()
    open_workspace(workspace)
    context = FlowRunContext.get()
    assert context is not None and isinstance(context.task_runner, WorkspaceTaskRunner)
    link = context.task_runner.client.dashboard_link  # starts the cluster, as a first submit does
    dashboard = urlsplit(link)
    with urllib.request.urlopen(f"http://{dashboard.hostname}:{dashboard.port}/health", timeout=10) as answer:
        return link, sorted(listening() - before), answer.read()


@pytest.mark.parametrize("processes", [False, True], ids=["threads", "processes"])
def test_local_cluster_listens_on_loopback_and_links_to_it(processes: bool):
    workspace = WorkspaceConfig(cluster=DaskCluster(n_workers=1, threads_per_worker=1, processes=processes))
    link, opened, health = cluster_sockets(workspace)
    dashboard = urlsplit(link)
    assert opened and all(ip == "127.0.0.1" for ip, _ in opened), opened
    assert dashboard.hostname == "127.0.0.1" and ("127.0.0.1", dashboard.port) in opened, (link, opened)
    assert health == b"ok"  # the link's address is the one serving
