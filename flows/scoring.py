"""The batch scoring pipeline: resolve the model → plan and check the inputs → score mini-batches on Dask → publish.

The cold path. Mini-batches (whole Parquet row groups, or one CSV file streamed) are plain
Dask tasks, at most `max_concurrency` in flight, so memory follows the batch size and not the
input size and the per-batch cost is milliseconds; the steps around them are Prefect tasks.
Each batch's output part is staged atomically; the partition is published in one rename once
every batch is done, by the one run holding the partition's lease. A re-run of the same model
version on the same input resumes from the staged parts, or does nothing if that run was already
published.
"""

import datetime as dt
import time
from typing import Any

from distributed import as_completed
from prefect.runtime import flow_run
from pydantic import BaseModel, Field

from mlpipe.blocks.workspace import WorkspaceConfig
from mlpipe.errors import MlpipeError
from mlpipe.flows.common import (
    WindowTemplate,
    cluster_capacity,
    dask_client,
    open_workspace,
    pipeline_flow,
    resolve_window,
    scheduled_time,
    threads_per_task,
)
from mlpipe.tasks import artifacts
from mlpipe.tasks.data.files import Batch
from mlpipe.tasks.links import artifact_key
from mlpipe.tasks.registry.model_ref import resolve_task
from mlpipe.tasks.scoring.batch import BatchResult, Staging, check_errors, record_unreadable, score_batch
from mlpipe.tasks.scoring.output import Mode, OutputLayout, ScoringManifest, build_manifest, publish_task, report
from mlpipe.tasks.scoring.plan import ScoringPlan, plan_task
from mlpipe.validation import Name, Strict


class ScoringParams(Strict):
    """What to score, with which model, and where to: rendered as a form in the Prefect UI."""

    model: str = Field(description="NAME@ALIAS, NAME/VERSION or an MLflow model URI")
    input: WindowTemplate = Field(
        description="file, directory or glob of Parquet/CSV, local or any fsspec URL; may contain "
        "{window_start:%Y-%m-%d} and {window_end:…}, filled from the run's scheduled time"
    )
    output: str = Field(description="folder of the partitioned Parquet output (local or fsspec URL)")
    mini_batch_size: int = Field(default=1_000_000, ge=1, description="rows per batch (whole row groups)")
    max_concurrency: int | None = Field(default=None, ge=1, description="batches in flight; default: worker threads")
    error_threshold: int = Field(default=0, ge=-1, description="errored rows (+ unreadable files) allowed; -1: any")
    mode: Mode = Field(default="append", description="append a partition, or overwrite the whole output")
    passthrough: list[str] = Field(default_factory=list, description="input columns copied to the output")
    partition: Name | None = Field(default=None, description="partition value; default: window date or run key")
    window_days: float = Field(default=1.0, gt=0, description="length of the input window before the scheduled time")


class ScoringSummary(BaseModel):
    """What a batch scoring run did (or found already done)."""

    manifest: ScoringManifest
    already_published: bool


@pipeline_flow("batch-scoring")
def batch_scoring(params: ScoringParams, config: WorkspaceConfig | None = None) -> ScoringSummary:
    """Score every input row with the model into a new output partition, exactly once."""
    workspace = open_workspace(config)
    source, window_start = resolve_window(params.input, scheduled_time(), params.window_days)
    model = resolve_task.submit(params.model, workspace.mlflow).result()
    partition = params.partition or (f"{window_start:%Y-%m-%d}" if window_start else None)
    plan = plan_task.submit(model, source, params.mini_batch_size, params.passthrough, partition).result()
    layout = OutputLayout(url=params.output.rstrip("/"), partition=plan.partition)
    leases = layout.leases(f"flow run {flow_run.id} ({flow_run.name}), run key {plan.run_key}", params.mode)
    try:
        existing = layout.check_free(plan.run_key, params.mode)
        if existing is not None:
            return ScoringSummary(manifest=existing, already_published=True)
        if params.mode == "overwrite":
            layout.owned_partitions()  # refuse a folder holding anything else before scoring, not after
        staging = layout.staging(plan.run_key)
        staging.prepare()
        started = dt.datetime.now(dt.UTC)
        clock = time.perf_counter()
        results, resumed = run_batches(plan, params, staging, workspace)
        seconds = time.perf_counter() - clock
        manifest = build_manifest(plan, params.mode, params.passthrough, layout, results, resumed, started, seconds)
        for lease in leases:
            lease.check()
        publish_task.submit(layout, staging, manifest).result()
    finally:
        for lease in reversed(leases):
            lease.release()
    report(manifest, workspace.mlflow)
    return ScoringSummary(manifest=manifest, already_published=False)


def run_batches(
    plan: ScoringPlan, params: ScoringParams, staging: Staging, workspace: WorkspaceConfig
) -> tuple[list[BatchResult], int]:
    """Score the batches not yet staged, at most `max_concurrency` at a time, with visible progress.

    Returns every batch's result and how many were done by an earlier, interrupted attempt.

    Raises:
        MlpipeError: errored rows and unreadable files exceed `error_threshold` (nothing is published).
        BatchFailed: a batch failed for another reason than its data (I/O, a full disk, the model); it
            stays pending for the re-run; the batches in flight are cancelled (any that finish are kept).
    """
    done = staging.finished()
    resumed = len(done)
    problems = [file for file in plan.inputs if file.problem]
    check_errors(done, problems, params.error_threshold)  # unreadable files alone may be too many
    todo = [batch for batch in plan.batches if batch.index not in done]
    threads, _ = cluster_capacity()
    concurrency = params.max_concurrency or threads
    per_batch_threads = threads_per_task(concurrency)
    progress = artifacts.progress(
        artifact_key(f"scoring-{plan.partition}"),
        100.0 * resumed / max(len(plan.batches), 1),
        f"batches of {plan.model.name} v{plan.model.version} on {len(plan.inputs)} files",
    )
    client = dask_client()
    inflight = {_submit(client, b, plan, params, staging, workspace, per_batch_threads) for b in todo[:concurrency]}
    pending = iter(todo[concurrency:])
    finished = as_completed(list(inflight), loop=client.loop)
    reported = time.monotonic()
    for future in finished:
        inflight.discard(future)
        try:
            result: BatchResult = future.result()
            done[result.index] = result
            check_errors(done, problems, params.error_threshold)
        except MlpipeError:
            client.cancel(list(inflight))
            raise
        following = next(pending, None)
        if following is not None:
            submitted = _submit(client, following, plan, params, staging, workspace, per_batch_threads)
            inflight.add(submitted)
            finished.add(submitted)
        if time.monotonic() - reported > 1.0 or len(done) == len(plan.batches):
            artifacts.advance(progress, 100.0 * len(done) / len(plan.batches))
            reported = time.monotonic()
    check_errors(done, problems, params.error_threshold)
    record_unreadable(problems, staging)
    return [done[index] for index in sorted(done)], resumed


def _submit(
    client: Any,
    batch: Batch,
    plan: ScoringPlan,
    params: ScoringParams,
    staging: Staging,
    workspace: WorkspaceConfig,
    threads: int,
) -> Any:
    return client.submit(
        score_batch,
        batch,
        plan.model,
        workspace.mlflow,
        staging,
        params.passthrough,
        threads,
        key=f"score-{plan.run_key}-{batch.index:05d}",
        pure=False,
    )
