"""Dask cluster: a LocalCluster by default, or the address of an existing scheduler."""

import os
from typing import Any

from prefect.blocks.core import Block
from pydantic import Field

from mlpipe.validation import FORBID_UNKNOWN


class DaskCluster(Block):
    """Where tasks run.

    With no `address` (and no `DASK_SCHEDULER_ADDRESS`) each flow run starts a LocalCluster on
    this machine; with one, it connects to that scheduler (`dask scheduler`, dask-kubernetes,
    Dask Gateway, Coiled…). Adaptive scaling applies to clusters the flow starts itself.
    """

    _block_type_name = "mlpipe Dask Cluster"
    model_config = FORBID_UNKNOWN

    address: str | None = Field(default=None, description="scheduler address; default: $DASK_SCHEDULER_ADDRESS")
    n_workers: int | None = Field(default=None, ge=1, description="LocalCluster workers; default: by cores")
    threads_per_worker: int | None = Field(default=None, ge=1, description="threads in each local worker")
    memory_limit: str | None = Field(default=None, description="per local worker, e.g. '4GiB'; default: auto")
    processes: bool = Field(default=False, description="local workers as processes (default: threads)")
    dashboard_address: str = Field(
        default="127.0.0.1:8787",
        description="where a local dashboard listens (another port if taken); '0.0.0.0:8787': every interface",
    )
    trim_worker_memory: bool | None = Field(
        default=None,
        description="local worker processes hand freed memory back to the system at once (Dask's "
        "MALLOC_TRIM_THRESHOLD_), which slows allocation; default: yes, but not for a sweep's workers",
    )
    adaptive_minimum: int | None = Field(default=None, ge=0, description="adaptive scaling: fewest workers")
    adaptive_maximum: int | None = Field(default=None, ge=1, description="adaptive scaling: most workers")

    def resolve(self) -> "DaskCluster":
        """A copy with the scheduler address taken from the environment when not set."""
        return self.model_copy(update={"address": self.address or os.environ.get("DASK_SCHEDULER_ADDRESS")})

    def local_cluster_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for `distributed.LocalCluster`, leaving Dask's own defaults alone but one.

        Dask's dashboard (and a threaded worker's diagnostics server) listen on every interface by
        default; a laptop's or a server's pipeline runs should not be reachable from the network,
        so both listen where `dashboard_address` says, the loopback interface unless told otherwise.
        """
        host = self.dashboard_address.rpartition(":")[0]
        kwargs: dict[str, Any] = {
            "processes": self.processes,
            "dashboard_address": self.dashboard_address,
            "worker_dashboard_address": f"{host}:0",
        }
        for name in ("n_workers", "threads_per_worker", "memory_limit"):
            value = getattr(self, name)
            if value is not None:
                kwargs[name] = value
        return kwargs

    def trims_worker_memory(self, *, by_default: bool) -> bool:
        """Whether local worker processes start with Dask's `MALLOC_TRIM_THRESHOLD_`, `by_default` unless set.

        Dask sets it so that a worker hands freed memory back to the system at once, which keeps
        a worker holding large partitions under its memory limit; glibc then stops raising its
        mmap threshold, so every large array is mapped and unmapped afresh. A sweep's trials are
        many short fits of at most a sample of the data, where that costs time and saves little
        (see the README's Sweeps section for both figures).
        """
        return by_default if self.trim_worker_memory is None else self.trim_worker_memory

    def adapt_kwargs(self) -> dict[str, int]:
        """Keyword arguments for `cluster.adapt`, empty when scaling is fixed."""
        bounds = {"minimum": self.adaptive_minimum, "maximum": self.adaptive_maximum}
        return {key: value for key, value in bounds.items() if value is not None}
