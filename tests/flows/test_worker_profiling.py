"""The Dask workers a flow starts do not sample their threads' stacks, unless Dask's configuration asks."""

import dask
import distributed
import pytest
from prefect.context import FlowRunContext

from mlpipe.blocks import DaskCluster, WorkspaceConfig
from mlpipe.flows.common import open_workspace, pipeline_flow
from mlpipe.flows.runner import WorkspaceTaskRunner

pytestmark = pytest.mark.flow


def samples_stacks(dask_worker: distributed.Worker) -> bool:
    """Whether the worker runs Dask's statistical profiler (for its dashboard's Profile page)."""
    return "profile" in dask_worker.periodic_callbacks


@pipeline_flow("worker-profiling")
def worker_profiling(workspace: WorkspaceConfig) -> list[bool]:
    open_workspace(workspace)
    context = FlowRunContext.get()
    assert context is not None and isinstance(context.task_runner, WorkspaceTaskRunner)
    return list(context.task_runner.client.run(samples_stacks).values())


def test_a_flows_worker_processes_do_not_sample_stacks_unless_dask_is_told_to():
    workspace = WorkspaceConfig(cluster=DaskCluster(n_workers=2, threads_per_worker=1, processes=True))
    assert worker_profiling(workspace) == [False, False]
    with dask.config.set({"distributed.worker.profile.enabled": True}):  # a user's own Dask setting
        assert worker_profiling(workspace) == [True, True]
