"""Split: train / validation / test snapshots, deterministic from the seed and the dataset hash."""

import hashlib
from collections.abc import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, model_validator

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import DataError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.datasets import DatasetRef, read_schema, read_table, row_groups, write_snapshot_batches
from mlpipe.validation import Strict


class SplitSpec(Strict):
    """How to split. With `time_ordered`, the newest rows (by the contract's time column) are the test set."""

    validation_fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    seed: int = 42
    time_ordered: bool = False

    @model_validator(mode="after")
    def _leaves_training_rows(self) -> "SplitSpec":
        if self.validation_fraction + self.test_fraction >= 1.0:
            raise ValueError("validation_fraction + test_fraction must be below 1")
        return self


Rows = np.ndarray
"""Row positions in the dataset."""


PARTS = ("train", "validation", "test")


class SplitRefs(BaseModel):
    """The three parts of a split dataset."""

    train: DatasetRef
    validation: DatasetRef
    test: DatasetRef


def split(dataset: DatasetRef, contract: DataContract, spec: SplitSpec, store: Datastore) -> SplitRefs:
    """Split `dataset`: stratified for classification, time-ordered when asked.

    Only the column that decides the split (the target to stratify on, or the time column) is
    loaded; each part is then written row group by row group, its rows in the dataset's order, so
    memory holds one row group whatever the dataset's size.

    Raises:
        DataError: too few rows, or a class too rare to appear in every part.
    """
    if spec.time_ordered:
        parts = _time_ordered(dataset, contract, spec, store)
    else:
        parts = _shuffled(dataset, contract, spec, store, seed=derived_seed(spec.seed, dataset.content_hash))
    for name, rows in zip(PARTS, parts, strict=True):
        if len(rows) == 0:
            raise DataError(f"{dataset.source}: {dataset.rows} rows leave the {name} split empty")
    schema = read_schema(dataset, store)
    train, validation, test = (
        write_snapshot_batches(_rows_of(dataset, store, rows), schema, store, f"{dataset.source}#{name}")
        for name, rows in zip(PARTS, parts, strict=True)
    )
    return SplitRefs(train=train, validation=validation, test=test)


def _rows_of(dataset: DatasetRef, store: Datastore, rows: Rows) -> Iterator[pa.Table]:
    """The dataset's rows at positions `rows`, in the dataset's order, a row group at a time."""
    chosen = np.zeros(dataset.rows, dtype=bool)
    chosen[rows] = True
    first = 0
    for group in row_groups(dataset, store):
        yield group.filter(pa.array(chosen[first : first + group.num_rows]))
        first += group.num_rows


def derived_seed(seed: int, content_hash: str) -> int:
    """A 32-bit seed that changes with the data as well as with the user's seed."""
    return int(hashlib.sha256(f"{seed}:{content_hash}".encode()).hexdigest()[:8], 16)


def _shuffled(
    dataset: DatasetRef, contract: DataContract, spec: SplitSpec, store: Datastore, seed: int
) -> tuple[Rows, Rows, Rows]:
    from sklearn.model_selection import train_test_split

    labels = None
    if contract.task == "classification":
        labels = read_table(dataset, store, [contract.target])[contract.target].to_numpy(zero_copy_only=False)
    held_out = spec.validation_fraction + spec.test_fraction
    try:
        train, rest = train_test_split(np.arange(dataset.rows), test_size=held_out, random_state=seed, stratify=labels)
        validation, test = train_test_split(
            rest,
            test_size=spec.test_fraction / held_out,
            random_state=seed,
            stratify=labels[rest] if labels is not None else None,
        )
    except ValueError as error:
        raise DataError(f"cannot split on target '{contract.target}': {error}") from None
    return train, validation, test


def _time_ordered(
    dataset: DatasetRef, contract: DataContract, spec: SplitSpec, store: Datastore
) -> tuple[Rows, Rows, Rows]:
    if contract.time_column is None:
        raise DataError(f"{dataset.source}: a time-ordered split needs a time column (--time-column)")
    times = read_table(dataset, store, [contract.time_column])
    ordered = pc.sort_indices(times, sort_keys=[(contract.time_column, "ascending")]).to_numpy()
    n = len(ordered)
    test_start = n - round(n * spec.test_fraction)
    validation_start = test_start - round(n * spec.validation_fraction)
    return ordered[:validation_start], ordered[validation_start:test_start], ordered[test_start:]


def combine(parts: list[DatasetRef], store: Datastore, source: str) -> DatasetRef:
    """One snapshot of several (train + validation, to retrain a sweep's winner or fold for CV), streamed."""
    groups = (group for part in parts for group in row_groups(part, store))
    return write_snapshot_batches(groups, read_schema(parts[0], store), store, source)


split_task = pipeline_task(split)
combine_task = pipeline_task(combine)
