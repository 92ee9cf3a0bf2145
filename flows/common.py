"""What the flows share: how they are declared, their configuration and cluster, run timing and thread budgets."""

import datetime as dt
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Annotated, Any, Literal, ParamSpec, TypeVar

from prefect import Flow, flow, get_run_logger
from prefect.context import FlowRunContext
from prefect.runtime import flow_run
from pydantic import AfterValidator

from mlpipe.blocks.workspace import WorkspaceConfig
from mlpipe.errors import ConfigError, MlpipeError
from mlpipe.flows.runner import WorkspaceTaskRunner
from mlpipe.prefect_block_schemas import build_block_schemas_once
from mlpipe.prefect_heartbeats import end_runs_without_waiting_for_heartbeats
from mlpipe.redaction import install_log_redaction
from mlpipe.workspace import GPU_RESOURCE, available_cores

if TYPE_CHECKING:  # the model families import scikit-learn and xgboost: only flows that train need them
    from mlpipe.tasks.model.families import Family, ModelSpec

P = ParamSpec("P")
R = TypeVar("R")

Device = Literal["cpu", "cuda", "auto"]
"""Where models train: CPU workers, workers that advertise the `GPU` resource, or GPU workers if the cluster has any."""


def pipeline_flow(name: str, *, trim_worker_memory: bool = True) -> Callable[[Callable[P, R]], Flow[P, R]]:
    """The decorator of every mlpipe flow: its name, a Dask task runner chosen at run time, validated parameters.

    The runner starts the cluster the run's workspace names (see `open_workspace`), so the
    same flow runs on a laptop's LocalCluster or on a remote scheduler without a change. A run
    ends when its work does, not when Prefect's heartbeat thread next wakes (see
    `mlpipe.prefect_heartbeats`), and its steps are submitted without building a block's JSON
    schema again for each (see `mlpipe.prefect_block_schemas`). `trim_worker_memory` is the
    flow's default for the worker processes of a local cluster (`DaskCluster.trims_worker_memory`).
    """
    end_runs_without_waiting_for_heartbeats()
    build_block_schemas_once()
    # a DaskTaskRunner; Prefect's signature asks for its own base type
    runner: Any = WorkspaceTaskRunner(trim_worker_memory=trim_worker_memory)
    return flow(name=name, task_runner=runner, validate_parameters=True)


def open_workspace(config: WorkspaceConfig | None) -> WorkspaceConfig:
    """Resolve defaults and environment overrides, and use the configured Dask cluster.

    Called once at the start of a flow run; the resolved values are passed down to tasks so
    that workers on other machines need no configuration of their own.
    """
    install_log_redaction()  # also in processes that did not start from the CLI (a deployment's worker)
    workspace = (config or WorkspaceConfig()).resolve()
    context = FlowRunContext.get()
    if context is not None and isinstance(context.task_runner, WorkspaceTaskRunner):
        context.task_runner.use(workspace.cluster)
        if workspace.cluster.address:
            # Workers of a scheduler may run on other hosts: a task's cached result must be where every
            # worker (and the next run) can read it, not under a path of this process's machine.
            context.result_store = context.result_store.model_copy(
                update={"result_storage": workspace.datastore.result_storage()}
            )
    return workspace


def cluster_capacity() -> tuple[int, int]:
    """Worker threads and GPUs on the flow's Dask cluster (this machine's cores outside a flow)."""
    context = FlowRunContext.get()
    if context is None or not isinstance(context.task_runner, WorkspaceTaskRunner):
        return available_cores(), 0
    workers = context.task_runner.client.scheduler_info(n_workers=-1)["workers"].values()
    threads = sum(int(w.get("nthreads", 0)) for w in workers)
    gpus = sum(int(w.get("resources", {}).get(GPU_RESOURCE, 0)) for w in workers)
    return threads or available_cores(), gpus


def resolve_device(device: Device, gpus: int) -> Literal["cpu", "cuda"]:
    """`cuda` or `cpu` for a cluster with `gpus` GPU workers; asking for cuda on a cluster with none is an error."""
    if device == "cuda" and gpus == 0:
        raise ConfigError(
            f"device 'cuda': no Dask worker advertises the {GPU_RESOURCE} resource (start GPU workers with "
            f"`dask worker SCHEDULER --resources {GPU_RESOURCE}=1`, or ask for device 'auto' or 'cpu')"
        )
    return "cuda" if device == "cuda" or (device == "auto" and gpus > 0) else "cpu"


def note_cpu_only(families: Iterable["Family"], device: Literal["cpu", "cuda"]) -> None:
    """Say which of `families` train on CPU workers although cuda was chosen (they have no GPU implementation)."""
    from mlpipe.tasks.model.families import GPU_FAMILIES

    cpu_only = sorted(set(families) - GPU_FAMILIES)
    if device == "cuda" and cpu_only:
        get_run_logger().warning("device cuda: no GPU implementation for %s, which train on CPU workers", cpu_only)


def placed(spec: "ModelSpec", device: Literal["cpu", "cuda"]) -> tuple["ModelSpec", AbstractContextManager[Any]]:
    """`spec` set for `device`, and the context to submit its task in.

    A GPU family on cuda trains with `device="cuda"` and its task asks the scheduler for one
    `GPU`: `dask.annotate` is read by the Dask client when prefect-dask submits the task, so a
    GPU worker of an existing scheduler gets it and no other worker can. Other families train
    as they are, anywhere.
    """
    from mlpipe.tasks.model.families import GPU_FAMILIES, on_device

    if device != "cuda" or spec.family not in GPU_FAMILIES:
        return spec, nullcontext()
    import dask

    return on_device(spec, device), dask.annotate(resources={GPU_RESOURCE: 1})


def threads_per_task(in_flight: int) -> int:
    """This machine's cores shared among the tasks that run at once (at least one each)."""
    return max(1, available_cores() // max(1, min(in_flight, available_cores())))


def scheduled_time() -> dt.datetime:
    """When this flow run was scheduled for (now, for a run started by hand): backfills set it in the past."""
    scheduled = flow_run.scheduled_start_time
    return scheduled if isinstance(scheduled, dt.datetime) else dt.datetime.fromisoformat(str(scheduled))


def resolve_window(template: str, end: dt.datetime, days: float) -> tuple[str, dt.datetime | None]:
    """The input location for the window that ends at the run's scheduled time (backfills set that time)."""
    if "{window_" not in template:
        return template, None
    start = end - dt.timedelta(days=days)
    return template.format(window_start=start, window_end=end), start


def check_window_template(template: str) -> str:
    """`template` if `{window_start:…}` / `{window_end:…}` are the only fields and their formats work.

    Checked when a flow's parameters are made (a deployment's, at registration), not at 2 a.m.
    """
    sample = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    try:
        template.format(window_start=sample, window_end=sample)
    except (KeyError, IndexError, ValueError) as error:
        raise ValueError(
            f"{template!r}: only {{window_start:FORMAT}} and {{window_end:FORMAT}} may be filled in ({error})"
        ) from None
    return template


WindowTemplate = Annotated[str, AfterValidator(check_window_template)]
"""A location that may name the run's window, e.g. `s3://lake/{window_start:%Y-%m-%d}/`."""


def dask_client() -> Any:
    """The flow's own Dask client, for work submitted as plain Dask tasks (no Prefect task run each)."""
    context = FlowRunContext.get()
    if context is None or not isinstance(context.task_runner, WorkspaceTaskRunner):
        raise MlpipeError("this step runs inside an mlpipe flow, on its Dask cluster")
    return context.task_runner.client
