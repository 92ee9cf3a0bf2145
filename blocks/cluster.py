"""Dask cluster: a LocalCluster by default, or the address of an existing scheduler."""

import os
from typing import Any

import distributed
from prefect.blocks.core import Block
from prefect_dask import DaskTaskRunner
from prefect_dask.client import PrefectDaskClient
from pydantic import Field


class DaskCluster(Block):
    """Where tasks run.

    With no `address` (and no `DASK_SCHEDULER_ADDRESS`) each flow run starts a LocalCluster on
    this machine; with one, it connects to that scheduler (`dask scheduler`, dask-kubernetes,
    Dask Gateway, Coiled…). Adaptive scaling applies to clusters the flow starts itself.
    """

    _block_type_name = "mlpipe Dask Cluster"

    address: str | None = Field(default=None, description="scheduler address; default: $DASK_SCHEDULER_ADDRESS")
    n_workers: int | None = Field(default=None, ge=1, description="LocalCluster workers; default: by cores")
    threads_per_worker: int | None = Field(default=None, ge=1, description="threads in each local worker")
    memory_limit: str | None = Field(default=None, description="per local worker, e.g. '4GiB'; default: auto")
    processes: bool = Field(default=False, description="local workers as processes (default: threads)")
    adaptive_minimum: int | None = Field(default=None, ge=0, description="adaptive scaling: fewest workers")
    adaptive_maximum: int | None = Field(default=None, ge=1, description="adaptive scaling: most workers")

    def resolve(self) -> "DaskCluster":
        """A copy with the scheduler address taken from the environment when not set."""
        return self.model_copy(update={"address": self.address or os.environ.get("DASK_SCHEDULER_ADDRESS")})

    def local_cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `distributed.LocalCluster`, leaving Dask's own defaults alone."""
        kwargs: dict[str, Any] = {"processes": self.processes}
        for name in ("n_workers", "threads_per_worker", "memory_limit"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs

    def adapt_kwargs(self) -> dict[str, int]:
        """Keyword arguments for `cluster.adapt`, empty when scaling is fixed."""
        bounds = {"minimum": self.adaptive_minimum, "maximum": self.adaptive_maximum}
        return {key: value for key, value in bounds.items() if value is not None}


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
        self.resolved_cluster_class = distributed.LocalCluster  # type: ignore[assignment]
        self.cluster_kwargs = settings.local_cluster_kwargs()
        if settings.processes:
            self.cluster_kwargs["env"] = {"PREFECT_API_URL": _current_api_url()}
        self.adapt_kwargs = settings.adapt_kwargs()

    @property
    def client(self) -> PrefectDaskClient:
        if self._client is None and not self.configured and not _inside_dask_worker():
            self.use(DaskCluster().resolve())
        return DaskTaskRunner.client.fget(self)  # type: ignore[attr-defined]


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
