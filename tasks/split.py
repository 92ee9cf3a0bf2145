"""Split: train / validation / test snapshots, deterministic from the seed and the dataset hash."""

import hashlib

import pandas as pd
import pyarrow as pa
from pydantic import BaseModel, Field, model_validator
from sklearn.model_selection import train_test_split

from blocks.datastore import Datastore
from mlpipe.errors import DataError
from tasks.caching import pipeline_task
from tasks.contract import DataContract
from tasks.datasets import DatasetRef, read_snapshot, write_snapshot


class SplitSpec(BaseModel):
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


class SplitRefs(BaseModel):
    """The three parts of a split dataset."""

    train: DatasetRef
    validation: DatasetRef
    test: DatasetRef


def split(dataset: DatasetRef, contract: DataContract, spec: SplitSpec, store: Datastore) -> SplitRefs:
    """Split `dataset`: stratified for classification, time-ordered when asked.

    Raises:
        DataError: too few rows, or a class too rare to appear in every part.
    """
    frame = read_snapshot(dataset, store)
    if spec.time_ordered:
        parts = _time_ordered(frame, contract, spec, dataset.source)
    else:
        parts = _shuffled(frame, contract, spec, seed=derived_seed(spec.seed, dataset.content_hash))
    for name, part in zip(("train", "validation", "test"), parts, strict=True):
        if part.empty:
            raise DataError(f"{dataset.source}: {len(frame)} rows leave the {name} split empty")
    train, validation, test = (
        write_snapshot(pa.Table.from_pandas(part, preserve_index=False), store, f"{dataset.source}#{name}")
        for name, part in zip(("train", "validation", "test"), parts, strict=True)
    )
    return SplitRefs(train=train, validation=validation, test=test)


def derived_seed(seed: int, content_hash: str) -> int:
    """A 32-bit seed that changes with the data as well as with the user's seed."""
    return int(hashlib.sha256(f"{seed}:{content_hash}".encode()).hexdigest()[:8], 16)


def _shuffled(
    frame: pd.DataFrame, contract: DataContract, spec: SplitSpec, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    stratify = frame[contract.target] if contract.task == "classification" else None
    held_out = spec.validation_fraction + spec.test_fraction
    try:
        train, rest = train_test_split(frame, test_size=held_out, random_state=seed, stratify=stratify)
        rest_stratify = rest[contract.target] if stratify is not None else None
        validation, test = train_test_split(
            rest, test_size=spec.test_fraction / held_out, random_state=seed, stratify=rest_stratify
        )
    except ValueError as error:
        raise DataError(f"cannot split on target '{contract.target}': {error}") from None
    return train, validation, test


def _time_ordered(
    frame: pd.DataFrame, contract: DataContract, spec: SplitSpec, source: str
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    if contract.time_column is None:
        raise DataError(f"{source}: a time-ordered split needs a time column (--time-column)")
    ordered = frame.sort_values(contract.time_column, kind="stable")
    n = len(ordered)
    test_start = n - round(n * spec.test_fraction)
    validation_start = test_start - round(n * spec.validation_fraction)
    return ordered.iloc[:validation_start], ordered.iloc[validation_start:test_start], ordered.iloc[test_start:]


split_task = pipeline_task(split)
