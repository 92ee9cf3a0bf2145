"""The scoring output: a partitioned Parquet dataset, its errors, and one manifest per partition.

The layout's names are in `mlpipe.tasks.scoring_layout`. A partition becomes visible in one
rename once every batch is complete; the manifest is written last, so a partition without one
is never mistaken for a finished run. A run holds its partition's lease from before it looks
for a published run until it has published, so two runs into one partition cannot both
publish; an overwrite also holds the whole output's lease.
"""

import datetime as dt
import json
from typing import Any, Literal

from fsspec.core import url_to_fs
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from mlpipe.tasks import artifacts
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.data.files import InputFile
from mlpipe.tasks.lease import Lease, LeaseHeld
from mlpipe.tasks.links import artifact_key, mlflow_links
from mlpipe.tasks.registry.model_ref import ResolvedModel
from mlpipe.tasks.scoring.batch import BatchResult, Staging
from mlpipe.tasks.scoring.plan import ScoringPlan
from mlpipe.tasks.scoring_layout import (
    ERRORS,
    LEASES,
    MANIFESTS,
    OWN_FOLDERS,
    STAGING,
    TRASH,
    manifest_name,
    manifest_partition,
    partition_folder,
)
from mlpipe.tasks.storage import child, write_json
from mlpipe.validation import Name

Mode = Literal["append", "overwrite"]


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
        return child(self.url, partition_folder(self.partition))

    @property
    def errors(self) -> str:
        return child(self.url, ERRORS, partition_folder(self.partition))

    @property
    def manifest(self) -> str:
        return child(self.url, MANIFESTS, manifest_name(self.partition))

    def staging(self, run_key: str) -> Staging:
        return Staging(url=child(self.url, STAGING, run_key))

    def leases(self, owner: str, mode: Mode) -> list[Lease]:
        """Take this partition's lease (and, to overwrite, the whole output's), and see no other run conflicts.

        An append takes its partition, then checks that no overwrite holds the output; an overwrite
        takes the output, then checks that no append holds any partition: whichever order two runs
        interleave in, at least one of them sees the other.

        Raises:
            LeaseHeld: another live run writes this partition, or an overwrite and an append would overlap.
        """
        whole = Lease(child(self.url, LEASES, "output.json"), owner)
        own = Lease(child(self.url, LEASES, manifest_name(self.partition)), owner)
        taken: list[Lease] = []
        try:
            for lease in (whole, own) if mode == "overwrite" else (own,):
                taken.append(lease.acquire())
            others = [whole] if mode == "append" else self._partition_leases(exclude=own.url)
            for other in others:
                record = other.read()
                if record is not None and not record.stale():
                    raise LeaseHeld(
                        f"{other.url} is held by {record.describe()}; an overwrite of {self.url} and a run into "
                        "one of its partitions cannot run at once"
                    )
        except BaseException:
            for lease in reversed(taken):
                lease.release()
            raise
        return taken

    def _partition_leases(self, exclude: str) -> list[Lease]:
        fs, folder = url_to_fs(child(self.url, LEASES))
        names = [path.rsplit("/", 1)[-1] for path in fs.glob(f"{folder}/{manifest_name('*')}")]
        return [Lease(lease, "") for name in names if (lease := child(self.url, LEASES, name)) != exclude]

    def owned_partitions(self) -> list[str]:
        """The partitions an overwrite may replace: `run=*` folders this output's runs published (with a manifest).

        Raises:
            ConfigError: the folder holds anything else (other files or folders, a partition
                without a manifest), named: an overwrite never deletes what scoring did not write.
        """
        fs, root = url_to_fs(self.url)
        if not fs.exists(root):
            return []
        manifests = url_to_fs(child(self.url, MANIFESTS))[1]
        names = [path.rsplit("/", 1)[-1] for path in (fs.ls(manifests, detail=False) if fs.exists(manifests) else [])]
        published = {partition for name in names if (partition := manifest_partition(name)) is not None}
        ours = published | {self.partition}  # this run's own partition, perhaps half published by a crash
        expected = {partition_folder(name) for name in ours}
        errors = url_to_fs(child(self.url, ERRORS))[1]
        foreign = [
            path[len(root) + 1 :]
            for path in fs.ls(root, detail=False)
            if (name := path.rsplit("/", 1)[-1]) not in expected and name not in OWN_FOLDERS
        ]
        foreign += [
            path[len(root) + 1 :]
            for path in (fs.ls(errors, detail=False) if fs.exists(errors) else [])
            if path.rsplit("/", 1)[-1] not in expected
        ]
        foreign += [
            path[len(root) + 1 :]
            for path in (fs.ls(manifests, detail=False) if fs.exists(manifests) else [])
            if path.rsplit("/", 1)[-1].removesuffix(".json") not in expected
        ]
        if foreign:
            raise ConfigError(
                f"--mode overwrite replaces only scoring partitions, but {self.url} also holds "
                f"{sorted(foreign)[:10]}; nothing was changed. Score into an empty folder, or move those away"
            )
        return sorted(published - {self.partition})

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

    `overwrite` first moves every other partition this output's runs published (its data, errors
    and manifest) aside, and deletes them only once the new partition and its manifest are in
    place; it refuses an output that holds anything else.

    Raises:
        ConfigError: `overwrite` found files or folders scoring did not write (nothing is moved).
    """
    fs, root = url_to_fs(layout.url)
    trash = f"{root}/{TRASH}/{manifest.run_key}"
    if manifest.mode == "overwrite":
        _set_aside(fs, layout, layout.owned_partitions(), trash)
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


def _set_aside(fs: Any, layout: OutputLayout, partitions: list[str], trash: str) -> None:
    root = url_to_fs(layout.url)[1]
    for partition in partitions:
        other = OutputLayout(url=layout.url, partition=partition)
        for url in (other.data, other.errors, other.manifest):
            path = url_to_fs(url)[1]
            if fs.exists(path):
                target = f"{trash}/{path[len(root) + 1 :]}"
                fs.makedirs(target.rsplit("/", 1)[0], exist_ok=True)
                fs.mv(path, target, recursive=True)


def report(manifest: ScoringManifest, tracking: MlflowConnection) -> None:
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
    model = manifest.model
    artifacts.table(
        artifact_key(f"scoring-{manifest.partition}-summary"),
        rows,
        f"batch scoring into partition {manifest.partition}",
        links=mlflow_links(
            tracking,
            run_id=model.run_id,
            run_label="MLflow run that trained the model",
            models=[(model.name, model.version)] if model.name and model.version else [],
        ),
    )


publish_task = pipeline_task(publish, cache_policy=NO_CACHE)
