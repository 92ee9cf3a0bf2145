"""Split: train / validation / test snapshots, deterministic from the seed and the dataset hash."""

import hashlib

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, model_validator
from sklearn.model_selection import train_test_split

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import DataError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.datasets import DatasetRef, read_table, write_snapshot
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


PARTS = ("train", "validation", "test")


class SplitRefs(BaseModel):
    """The three parts of a split dataset."""

    train: DatasetRef
    validation: DatasetRef
    test: DatasetRef


def split(dataset: DatasetRef, contract: DataContract, spec: SplitSpec, store: Datastore) -> SplitRefs:
    """Split `dataset`: stratified for classification, time-ordered when asked.

    Rows are chosen by index and copied by Arrow (`take`), with no round trip through pandas.

    Raises:
        DataError: too few rows, or a class too rare to appear in every part.
    """
    table = read_table(dataset, store)
    if spec.time_ordered:
        parts = _time_ordered(table, contract, spec, dataset.source)
    else:
        parts = _shuffled(table, contract, spec, seed=derived_seed(spec.seed, dataset.content_hash))
    for name, rows in zip(PARTS, parts, strict=True):
        if len(rows) == 0:
            raise DataError(f"{dataset.source}: {table.num_rows} rows leave the {name} split empty")
    train, validation, test = (
        write_snapshot(table.take(rows), store, f"{dataset.source}#{name}")
        for name, rows in zip(PARTS, parts, strict=True)
    )
    return SplitRefs(train=train, validation=validation, test=test)


def derived_seed(seed: int, content_hash: str) -> int:
    """A 32-bit seed that changes with the data as well as with the user's seed."""
    return int(hashlib.sha256(f"{seed}:{content_hash}".encode()).hexdigest()[:8], 16)


Rows = np.ndarray
"""Row positions in the dataset."""


def _shuffled(table: pa.Table, contract: DataContract, spec: SplitSpec, seed: int) -> tuple[Rows, Rows, Rows]:
    labels = table[contract.target].to_numpy(zero_copy_only=False) if contract.task == "classification" else None
    held_out = spec.validation_fraction + spec.test_fraction
    try:
        train, rest = train_test_split(
            np.arange(table.num_rows), test_size=held_out, random_state=seed, stratify=labels
        )
        validation, test = train_test_split(
            rest,
            test_size=spec.test_fraction / held_out,
            random_state=seed,
            stratify=labels[rest] if labels is not None else None,
        )
    except ValueError as error:
        raise DataError(f"cannot split on target '{contract.target}': {error}") from None
    return train, validation, test


def _time_ordered(table: pa.Table, contract: DataContract, spec: SplitSpec, source: str) -> tuple[Rows, Rows, Rows]:
    if contract.time_column is None:
        raise DataError(f"{source}: a time-ordered split needs a time column (--time-column)")
    ordered = pc.sort_indices(table, sort_keys=[(contract.time_column, "ascending")]).to_numpy()
    n = len(ordered)
    test_start = n - round(n * spec.test_fraction)
    validation_start = test_start - round(n * spec.validation_fraction)
    return ordered[:validation_start], ordered[validation_start:test_start], ordered[test_start:]


def combine(parts: list[DatasetRef], store: Datastore, source: str) -> DatasetRef:
    """One snapshot of several (train + validation, to retrain a sweep's winner or fold for CV)."""
    return write_snapshot(pa.concat_tables([read_table(part, store) for part in parts]), store, source)


split_task = pipeline_task(split)
combine_task = pipeline_task(combine)
