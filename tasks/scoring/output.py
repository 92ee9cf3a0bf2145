"""The scoring output: a partitioned Parquet dataset, its errors, and one manifest per partition.

    OUTPUT/run=<partition>/part-00000.parquet     predictions (readers skip `_…` folders)
    OUTPUT/_errors/run=<partition>/…              rows and files that could not be scored, with the reason
    OUTPUT/_manifests/run=<partition>.json        the commit record: model, inputs, counts, timings
    OUTPUT/_staging/<run key>/                    a run in progress (or interrupted, to resume)

A partition becomes visible in one rename once every batch is complete; the manifest is written
last, so a partition without one is never mistaken for a finished run.
"""

import datetime as dt
import json
from typing import Any, Literal

from fsspec.core import url_to_fs
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.errors import ConfigError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.data.files import InputFile
from mlpipe.tasks.links import artifact_key
from mlpipe.tasks.registry.model_ref import ResolvedModel
from mlpipe.tasks.scoring.batch import BatchResult, Staging
from mlpipe.tasks.scoring.plan import ScoringPlan
from mlpipe.tasks.storage import child, write_json
from mlpipe.validation import Name

Mode = Literal["append", "overwrite"]
PARTITION = "run"


class ScoringManifest(BaseModel):
    """What a scoring run read, with which model, and what it wrote."""

    run_key: str
    partition: str
    mode: Mode
    model: ResolvedModel
    inputs: list[InputFile]
    passthrough: list[str]
    extra_columns: list[str]
    rows_in: int
    rows_out: int
    rows_errored: int
    files_errored: int
    batches: int
    batches_resumed: int
    started: str
    finished: str
    seconds: float
    rows_per_second: float
    output: str
    errors: str


class OutputLayout(BaseModel):
    """Paths of one partition of the output dataset."""

    url: str
    partition: Name

    @property
    def data(self) -> str:
        return child(self.url, f"{PARTITION}={self.partition}")

    @property
    def errors(self) -> str:
        return child(self.url, "_errors", f"{PARTITION}={self.partition}")

    @property
    def manifest(self) -> str:
        return child(self.url, "_manifests", f"{PARTITION}={self.partition}.json")

    def staging(self, run_key: str) -> Staging:
        return Staging(url=child(self.url, "_staging", run_key))

    def published(self) -> ScoringManifest | None:
        """The partition's manifest, if a run published it."""
        fs, path = url_to_fs(self.manifest)
        if not fs.exists(path):
            return None
        with fs.open(path, "r") as handle:
            return ScoringManifest.model_validate(json.load(handle))

    def check_free(self, run_key: str, mode: Mode) -> ScoringManifest | None:
        """The manifest when this very run was published already; an error when another run holds the partition.

        Raises:
            ConfigError: in append mode, the partition holds another run's output.
        """
        existing = self.published()
        if existing is None or existing.run_key == run_key:
            return existing
        if mode == "append":
            raise ConfigError(
                f"{self.data} already holds another run (model {existing.model.name} "
                f"v{existing.model.version}, {existing.rows_out:,} rows); use another --partition, "
                "or --mode overwrite to replace the output"
            )
        return None


def build_manifest(
    plan: ScoringPlan,
    mode: Mode,
    passthrough: list[str],
    layout: OutputLayout,
    results: list[BatchResult],
    resumed: int,
    started: dt.datetime,
    seconds: float,
) -> ScoringManifest:
    """The commit record of a run: what it read, with which model, and what every batch wrote."""
    rows_in = sum(r.rows_in for r in results)
    return ScoringManifest(
        run_key=plan.run_key,
        partition=plan.partition,
        mode=mode,
        model=plan.model,
        inputs=plan.inputs,
        passthrough=passthrough,
        extra_columns=plan.extra_columns,
        rows_in=rows_in,
        rows_out=sum(r.rows_out for r in results),
        rows_errored=sum(r.rows_errored for r in results),
        files_errored=sum(1 for file in plan.inputs if file.problem),
        batches=len(plan.batches),
        batches_resumed=resumed,
        started=started.isoformat(),
        finished=dt.datetime.now(dt.UTC).isoformat(),
        seconds=seconds,
        rows_per_second=rows_in / seconds if seconds > 0 else 0.0,
        output=layout.data,
        errors=layout.errors,
    )


def publish(layout: OutputLayout, staging: Staging, manifest: ScoringManifest) -> None:
    """Move the staged partition into place, then write its manifest; safe to repeat after a crash.

    `overwrite` first moves every other partition, error set and manifest aside, and deletes
    them only once the new partition and its manifest are in place.
    """
    fs, root = url_to_fs(layout.url)
    trash = f"{root}/_trash/{manifest.run_key}"
    if manifest.mode == "overwrite":
        _set_aside(fs, root, layout, trash)
    for kind, target in (("data", layout.data), ("errors", layout.errors)):
        source = f"{url_to_fs(staging.url)[1]}/{kind}"
        target_path = url_to_fs(target)[1]
        if fs.exists(source):  # a worker that died mid-write left a temporary file behind
            for leftover in fs.ls(source, detail=False):
                if leftover.endswith(".tmp"):
                    fs.rm(leftover)
        if fs.exists(source) and fs.ls(source):
            if fs.exists(target_path):
                fs.rm(target_path, recursive=True)
            fs.makedirs(target_path.rsplit("/", 1)[0], exist_ok=True)
            fs.mv(source, target_path, recursive=True)
        elif kind == "data" and not fs.exists(target_path):
            fs.makedirs(target_path, exist_ok=True)  # no rows scored: an empty partition, still committed
    fs.makedirs(url_to_fs(layout.manifest)[1].rsplit("/", 1)[0], exist_ok=True)
    write_json(layout.manifest, manifest.model_dump(mode="json"))
    for leftover in (url_to_fs(staging.url)[1], trash):
        if fs.exists(leftover):
            fs.rm(leftover, recursive=True)


def _set_aside(fs: Any, root: str, layout: OutputLayout, trash: str) -> None:
    keep = {url_to_fs(layout.data)[1], url_to_fs(layout.errors)[1], url_to_fs(layout.manifest)[1]}
    candidates = [p for p in fs.ls(root, detail=False) if not p.rsplit("/", 1)[-1].startswith("_")]
    for folder in ("_errors", "_manifests"):
        if fs.exists(f"{root}/{folder}"):
            candidates += fs.ls(f"{root}/{folder}", detail=False)
    for path in candidates:
        if path.rstrip("/") in keep:
            continue
        target = f"{trash}/{path[len(root) + 1 :]}"
        fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
        fs.mv(path, target, recursive=True)


def report(manifest: ScoringManifest) -> None:
    """The run's counts, throughput and where its output and errors are, as a Prefect table artifact."""
    counts = f"{manifest.rows_in:,} / {manifest.rows_out:,} / {manifest.rows_errored:,}"
    rows: list[dict[str, Any]] = [
        {"what": "model", "value": f"{manifest.model.name} v{manifest.model.version}"},
        {"what": "input files", "value": len(manifest.inputs)},
        {"what": "rows in / out / errored", "value": counts},
        {"what": "unreadable files", "value": manifest.files_errored},
        {"what": "batches (resumed)", "value": f"{manifest.batches} ({manifest.batches_resumed})"},
        {"what": "rows per second", "value": f"{manifest.rows_per_second:,.0f}"},
        {"what": "output", "value": manifest.output},
        {"what": "errors", "value": manifest.errors},
    ]
    create_table_artifact(
        key=artifact_key(f"scoring-{manifest.partition}-summary"),
        table=rows,
        description=f"batch scoring into partition {manifest.partition}",
    )


publish_task = pipeline_task(publish, cache_policy=NO_CACHE)
