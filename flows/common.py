"""What every flow does first: load its configuration once and point its task runner at the cluster."""

from prefect.context import FlowRunContext

from blocks.cluster import WorkspaceTaskRunner
from blocks.workspace import WorkspaceConfig


def open_workspace(config: WorkspaceConfig | None) -> WorkspaceConfig:
    """Resolve defaults and environment overrides, and use the configured Dask cluster.

    Called once at the start of a flow run; the resolved values are passed down to tasks so
    that workers on other machines need no configuration of their own.
    """
    workspace = (config or WorkspaceConfig()).resolve()
    context = FlowRunContext.get()
    if context is not None and isinstance(context.task_runner, WorkspaceTaskRunner):
        context.task_runner.use(workspace.cluster)
    return workspace
