"""Scoring inputs: find the files, cut them into mini-batches, and check them against the model's signature.

Everything here reads only file listings, Parquet footers and CSV headers, so a wrong input
fails in seconds, before any worker scores a row or anything is written.
"""

import hashlib
from typing import Literal

import fsspec
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
from fsspec.core import url_to_fs
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.errors import DataError
from tasks.caching import pipeline_task
from tasks.model_ref import InputColumn, ResolvedModel

Format = Literal["parquet", "csv"]
SUFFIXES: dict[str, Format] = {".parquet": "parquet", ".pq": "parquet", ".csv": "csv"}
NUMERIC = {"long", "integer", "double", "float"}


class InputFile(BaseModel):
    """One input file: where it is, what it is, and its identity (fsspec's `ukey`: size and mtime, or ETag)."""

    url: str
    format: Format
    ukey: str
    rows: int | None = None
    columns: dict[str, str] = {}
    problem: str | None = None
    """Why the file cannot be read at all (a corrupt footer): it is reported, not scored."""


class Batch(BaseModel):
    """A unit of work and of output: whole row groups of one Parquet file, or one CSV file streamed."""

    index: int
    file: InputFile
    row_groups: list[int] = []
    first_row: int = 0
    rows: int | None = None


class ScoringPlan(BaseModel):
    """The inputs, their batches and the run's identity, checked before anything is written."""

    model: ResolvedModel
    inputs: list[InputFile]
    batches: list[Batch]
    extra_columns: list[str]
    run_key: str
    partition: str


def plan_scoring(
    model: ResolvedModel, source: str, mini_batch_size: int, passthrough: list[str], partition: str | None
) -> ScoringPlan:
    """List and inspect the inputs, cut them into batches and check them against the model's signature.

    The run key identifies the model version, every input file's identity and the batching:
    a re-run with the same key continues (or finds published) the same output.

    Raises:
        DataError: no input, or a column missing or of the wrong type (named with its file).
    """
    files: list[InputFile] = []
    batches: list[Batch] = []
    for listed in list_inputs(source):
        described, cut = read_layout(listed, mini_batch_size, len(batches))
        files.append(described)
        batches.extend(cut)
    extra = check_schema(files, model.inputs, passthrough)
    identity = "\n".join([model.uri, inputs_fingerprint(files), str(mini_batch_size), ",".join(passthrough)])
    run_key = hashlib.sha256(identity.encode()).hexdigest()[:16]
    return ScoringPlan(
        model=model,
        inputs=files,
        batches=batches,
        extra_columns=extra,
        run_key=run_key,
        partition=partition or run_key,
    )


def list_inputs(location: str) -> list[InputFile]:
    """The Parquet and CSV files at a path, directory (searched recursively) or glob, in a stable order.

    Raises:
        DataError: nothing to score there.
    """
    fs, path = url_to_fs(location)
    if fs.isdir(path):
        paths = [p for p in fs.find(path) if _format(p) and not _hidden(p, path)]
    elif any(char in path for char in "*?["):
        paths = [p for p in fs.glob(path) if _format(p)]
    elif fs.exists(path):
        paths = [path]
    else:
        raise DataError(f"{location}: no such file or directory")
    if not paths:
        raise DataError(f"{location}: no Parquet (.parquet) or CSV (.csv) files to score")
    files = []
    for found in sorted(paths):
        kind = _format(found)
        if kind is None:
            raise DataError(f"{location}: {found} is neither Parquet (.parquet) nor CSV (.csv)")
        files.append(InputFile(url=fs.unstrip_protocol(found), format=kind, ukey=fs.ukey(found)))
    return files


def read_layout(file: InputFile, mini_batch_size: int, first_index: int) -> tuple[InputFile, list[Batch]]:
    """Read the file's footer (Parquet) or header (CSV): its columns, rows and mini-batches.

    A file that cannot be read becomes a `problem` with no batches, so one corrupt file among
    many is reported by name instead of stopping the run.
    """
    try:
        if file.format == "csv":
            described = file.model_copy(update={"columns": _csv_columns(file.url)})
            return described, [Batch(index=first_index, file=described)]
        with fsspec.open(file.url, "rb") as handle:
            metadata = pq.ParquetFile(handle).metadata
            schema = metadata.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as error:
        return file.model_copy(update={"problem": f"cannot read the file: {error}"}), []
    described = file.model_copy(
        update={"rows": metadata.num_rows, "columns": {field.name: str(field.type) for field in schema}}
    )
    batches: list[Batch] = []
    groups: list[int] = []
    rows = first_row = 0
    for group in range(metadata.num_row_groups):
        groups.append(group)
        rows += metadata.row_group(group).num_rows
        if rows >= mini_batch_size or group == metadata.num_row_groups - 1:
            batch = Batch(index=first_index + len(batches), file=described, row_groups=groups, first_row=first_row)
            batches.append(batch.model_copy(update={"rows": rows}))
            first_row, groups, rows = first_row + rows, [], 0
    return described, batches


def check_schema(files: list[InputFile], inputs: list[InputColumn], passthrough: list[str]) -> list[str]:
    """Every readable file against the model's signature; returns the extra columns (allowed, reported).

    Raises:
        DataError: a required column is missing or has a type the model cannot take, named with its file.
    """
    extra: set[str] = set()
    expected = {column.name: column for column in inputs}
    for file in files:
        if file.problem:
            continue
        for column in inputs:
            if column.name not in file.columns:
                if column.required:
                    raise DataError(f"{file.url}: column '{column.name}' is missing (the model needs it)")
                continue
            found = file.columns[column.name]
            if file.format == "parquet" and not compatible(found, column.type):
                raise DataError(f"{file.url}: column '{column.name}' has type {found}; the model expects {column.type}")
        for name in passthrough:
            if name not in file.columns:
                raise DataError(f"{file.url}: passthrough column '{name}' is missing")
        extra.update(name for name in file.columns if name not in expected and name not in passthrough)
    return sorted(extra)


def compatible(arrow_type: str, mlflow_type: str) -> bool:
    """Whether a Parquet column of `arrow_type` can feed a signature column of `mlflow_type`."""
    kind = arrow_type.removeprefix("dictionary<values=").split(",")[0].split("[")[0]
    if mlflow_type in NUMERIC:
        return kind.startswith(("int", "uint", "float", "double", "halffloat", "decimal")) or kind == "null"
    if mlflow_type == "string":
        return kind in ("string", "large_string", "large_utf8", "utf8", "null")
    if mlflow_type == "boolean":
        return kind in ("bool", "null")
    if mlflow_type == "datetime":
        return kind.startswith(("timestamp", "date")) or kind == "null"
    return True


def inputs_fingerprint(files: list[InputFile]) -> str:
    """Identifies the input: every file's URL and identity, in order."""
    content = "\n".join(f"{file.url} {file.ukey}" for file in files)
    return hashlib.sha256(content.encode()).hexdigest()


def _csv_columns(url: str) -> dict[str, str]:
    """Column names from the header; values are parsed per row when scored, so a bad cell fails one row."""
    with fsspec.open(url, "rb") as handle:
        reader = pacsv.open_csv(handle, read_options=pacsv.ReadOptions(block_size=1 << 16))
        return {field.name: "csv" for field in reader.schema}


def _format(path: str) -> Format | None:
    return next((kind for suffix, kind in SUFFIXES.items() if path.lower().endswith(suffix)), None)


def _hidden(path: str, root: str) -> bool:
    """Files under `_…` or `.…` folders (e.g. another run's staging) are not inputs."""
    return any(part.startswith(("_", ".")) for part in path[len(root) :].split("/") if part)


plan_task = pipeline_task(plan_scoring, cache_policy=NO_CACHE)
