"""The task runner of every mlpipe flow: Dask, on the cluster the run's workspace names.

A flow's decorator is evaluated at import, before any configuration is read, so the runner is
created unconfigured and told its cluster when the run starts (`flows.common.open_workspace`).
"""

import os
from collections.abc import Iterable
from typing import Any

import distributed
from distributed.core import Status
from distributed.diagnostics.plugin import WorkerPlugin
from distributed.utils import format_dashboard_link
from prefect import Task
from prefect_dask import DaskTaskRunner
from prefect_dask.client import PrefectDaskClient
from prefect_dask.task_runners import PrefectDaskFuture

from mlpipe.blocks.cluster import DaskCluster
from mlpipe.flows import step_reports
from mlpipe.prefect_settings import share_settings
from mlpipe.prefect_tls import share_tls_contexts

MALLOC_TRIM_THRESHOLD = "MALLOC_TRIM_THRESHOLD_"
"""The glibc variable Dask's nannies set for their workers (`distributed.nanny.pre-spawn-environ`)."""


class WorkspaceTaskRunner(DaskTaskRunner):
    """A DaskTaskRunner whose cluster is chosen when the flow runs, not when it is defined.

    A flow calls `use(cluster)` with its configuration before submitting work; a runner
    that was never told uses `DaskCluster()` defaults. The cluster starts on first submit.
    It hands the flow's Prefect API URL to the local workers it starts: without it each
    worker process would start a temporary Prefect server of its own. `trim_worker_memory` is
    the flow's default for those workers (see `DaskCluster.trims_worker_memory`).
    """

    def __init__(self, *, trim_worker_memory: bool = True) -> None:
        super().__init__()
        self.configured = False
        self.trim_worker_memory = trim_worker_memory
        self.steps_elsewhere = False

    def duplicate(self) -> "WorkspaceTaskRunner":
        return type(self)(trim_worker_memory=self.trim_worker_memory)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, WorkspaceTaskRunner)

    def use(self, settings: DaskCluster) -> None:
        """Point this runner at the configured cluster (before its first submit)."""
        if self._client is not None:
            raise RuntimeError("the Dask cluster is already running; call use() before submitting tasks")
        self.configured = True
        self.steps_elsewhere = bool(settings.address) or settings.processes
        if settings.address:
            self.address = settings.address
            return
        self.resolved_cluster_class = LocalDaskCluster  # type: ignore[assignment]
        self.cluster_kwargs = settings.local_cluster_kwargs()
        if settings.processes:
            self.cluster_kwargs["env"] = {"PREFECT_API_URL": _current_api_url()}
            if not settings.trims_worker_memory(by_default=self.trim_worker_memory):
                self.cluster_kwargs["worker_class"] = UntrimmedNanny
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

    def submit(  # type: ignore[override]  # prefect-dask's signature: the base's overloads name other futures
        self,
        task: Task[Any, Any],
        parameters: dict[str, Any],
        wait_for: Iterable[PrefectDaskFuture[Any]] | None = None,
        dependencies: dict[str, set[Any]] | None = None,
    ) -> PrefectDaskFuture[Any]:
        """As `DaskTaskRunner.submit`, but the Dask key of each task run is a fresh id, not a hash of its arguments.

        Dask names a submitted call by hashing the function and every argument, which here means
        pickling the task, its parameters and the serialized Prefect context: ≈ 16 ms of every
        step, in the flow's process, between one step and the next. The hash only lets identical
        submissions share a key, and no two task runs are identical: each has its own id.
        """
        if not self._started:
            raise RuntimeError("The task runner must be started before submitting work.")
        future = self.client.submit(
            task,
            parameters=self._optimize_futures(parameters),
            wait_for=self._optimize_futures(wait_for) if wait_for else None,
            dependencies=dependencies,
            return_type="state",
            pure=False,
        )
        if self.steps_elsewhere:
            step_reports.follow(future, task.name)
        return PrefectDaskFuture[Any](wrapped_future=future, task_run_id=future.task_run_id)


class PerProcessPrefect(WorkerPlugin):
    """On every worker of the cluster (those that join later too): Prefect's per-task set-up done once per process.

    Each task run on a worker makes two Prefect API clients and rebuilds the flow's settings; see
    `mlpipe.prefect_tls` and `mlpipe.prefect_settings`.
    """

    name = "mlpipe-per-process-prefect"

    def setup(self, worker: distributed.Worker) -> None:
        share_tls_contexts()
        share_settings()


class UntrimmedNanny(distributed.Nanny):
    """A nanny whose worker process starts without Dask's `MALLOC_TRIM_THRESHOLD_`: glibc's own thresholds.

    The variable only counts when the process starts. Dask also leaves it in the environment of
    the process that spawned a trimmed worker, and a later worker spawned there would inherit it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.pre_spawn_env.pop(MALLOC_TRIM_THRESHOLD, None)
        self.env.pop(MALLOC_TRIM_THRESHOLD, None)

    async def instantiate(self) -> Status:
        os.environ.pop(MALLOC_TRIM_THRESHOLD, None)
        return await super().instantiate()


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
