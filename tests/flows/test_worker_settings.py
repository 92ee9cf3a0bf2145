"""A flow's Prefect settings reach its Dask tasks as they are, built once per worker process, not once per task."""

import distributed
import pytest
from prefect import task
from prefect.settings import PREFECT_TASKS_DEFAULT_RETRIES, get_current_settings, temporary_settings

from mlpipe.blocks import DaskCluster, WorkspaceConfig
from mlpipe.flows.common import open_workspace, pipeline_flow

pytestmark = pytest.mark.flow


@task
def settings_seen() -> tuple[int, bool]:
    """The retries setting this task sees, and whether its settings object is the first equal one of its process."""
    settings = get_current_settings()
    seen = vars(distributed.get_worker()).setdefault("settings_seen", [])  # kept alive: no id is reused
    seen.append(settings)
    return settings.tasks.default_retries, settings is next(earlier for earlier in seen if earlier == settings)


@pipeline_flow("worker-settings")
def worker_settings(workspace: WorkspaceConfig) -> list[tuple[int, bool]]:
    open_workspace(workspace)
    return [settings_seen.submit().result() for _ in range(4)]


def test_tasks_get_the_flows_settings_built_once_per_worker_process():
    with (
        distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
    ):
        workspace = WorkspaceConfig(cluster=DaskCluster(address=cluster.scheduler_address))
        with temporary_settings({PREFECT_TASKS_DEFAULT_RETRIES: 2}):
            first = worker_settings(workspace)
        with temporary_settings({PREFECT_TASKS_DEFAULT_RETRIES: 3}):
            second = worker_settings(workspace)
    assert first == [(2, True)] * 4  # the flow's value, and one settings object for every task
    assert second == [(3, True)] * 4  # changed settings arrive changed, in the same worker process
