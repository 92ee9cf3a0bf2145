"""The task runner of every mlpipe flow: Dask, on the cluster the run's workspace names.

A flow's decorator is evaluated at import, before any configuration is read, so the runner is
created unconfigured and told its cluster when the run starts (`flows.common.open_workspace`).
"""

from typing import Any

import distributed
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.utils import format_dashboard_link
from prefect_dask import DaskTaskRunner
from prefect_dask.client import PrefectDaskClient

from mlpipe.blocks.cluster import DaskCluster
from mlpipe.prefect_settings import share_settings
from mlpipe.prefect_tls import share_tls_contexts


class WorkspaceTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner whose cluster is chosen when the flow runs, not when it is defined.

    A flow calls `use(cluster)` with its configuration before submitting work; a runner
    that was never told uses `DaskCluster()` defaults. The cluster starts on first submit.
    It hands the flow's Prefect API URL to the local workers it starts: without it each
    worker process would start a temporary Prefect server of its own.
    """

    def __init__(self) -> None:
        super().__init__()
        self.configured = False

    def duplicate(self) -> "WorkspaceTaskRunner":
        return type(self)()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkspaceTaskRunner)

    def use(self, settings: DaskCluster) -> None:
        """Point this runner at the configured cluster (before its first submit)."""
        if self._client is not None:
            raise RuntimeError("the Dask cluster is already running; call use() before submitting tasks")
        self.configured = True
        if settings.address:
            self.address = settings.address
            return
        self.resolved_cluster_class = LocalDaskCluster  # type: ignore[assignment]
        self.cluster_kwargs = settings.local_cluster_kwargs()
        if settings.processes:
            self.cluster_kwargs["env"] = {"PREFECT_API_URL": _current_api_url()}
        self.adapt_kwargs = settings.adapt_kwargs()

    @property
    def client(self) -> PrefectDaskClient:
        if self._client is None and not self.configured and not _inside_dask_worker():
            self.use(DaskCluster().resolve())
        starting = self._client is None
        client: PrefectDaskClient = DaskTaskRunner.client.fget(self)  # type: ignore[attr-defined]
        if starting:
            share_settings()
            client.register_plugin(PerProcessPrefect(), name=PerProcessPrefect.name)
        return client


class PerProcessPrefect(WorkerPlugin):
    """On every worker of the cluster (those that join later too): Prefect's per-task set-up done once per process.

    Each task run on a worker makes two Prefect API clients and rebuilds the flow's settings; see
    `mlpipe.prefect_tls` and `mlpipe.prefect_settings`.
    """

    name = "mlpipe-per-process-prefect"

    def setup(self, worker: distributed.Worker) -> None:
        share_tls_contexts()
        share_settings()


class LocalDaskCluster(distributed.LocalCluster):
    """A LocalCluster whose dashboard link is the address its dashboard listens on.

    Dask builds the link from the scheduler's address, which for a threaded cluster is the host's
    network address: with the dashboard on 127.0.0.1 that link would not open.
    """

    def __init__(self, *, dashboard_address: str, **kwargs: Any) -> None:
        self.dashboard_host = dashboard_address.rpartition(":")[0]
        super().__init__(dashboard_address=dashboard_address, **kwargs)

    @property
    def dashboard_link(self) -> str:
        link = str(super().dashboard_link)
        if not link or self.dashboard_host in ("", "0.0.0.0", "::", "[::]"):
            return link
        return str(format_dashboard_link(self.dashboard_host, self.scheduler_info["services"]["dashboard"]))


def _inside_dask_worker() -> bool:
    try:
        distributed.get_worker()
    except ValueError:
        return False
    return True


def _current_api_url() -> str:
    """The API this flow run reports to, temporary server included."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        return str(client.api_url)
