"""Split: train / validation / test snapshots, deterministic from the seed and the data.

Each row's part is decided once, as one byte in an array over the dataset; the parts are then
written a row group at a time: the three parts of one file side by side from one read of it, a
partitioned dataset's parts partition by partition.
"""

import hashlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from itertools import repeat

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
from pydantic import BaseModel, Field, model_validator

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import DataError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.datasets import (
    DatasetRef,
    PartitionedWriter,
    SnapshotWriter,
    partitions,
    read_schema,
    read_table,
    row_groups,
    write_snapshot_batches,
)
from mlpipe.validation import Strict

ROW_HASH_ROWS = 1_000_000
"""From this many rows, rows are split by their own hash: stratification then holds by numbers alone, and a
shuffle's row positions (8 bytes a row) would not fit a worker for long."""


class SplitSpec(Strict):
    """How to split. With `time_ordered`, the newest rows (by the contract's time column) are the test set."""

    validation_fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    test_fraction: float = Field(default=0.15, gt=0.0, lt=1.0)
    seed: int = 42
    time_ordered: bool = False
    row_hash: bool | None = Field(
        default=None,
        description="split each row by the hash of the seed and its values, so the same row always lands in the "
        f"same part (default: from {ROW_HASH_ROWS:,} rows; below, a shuffle stratified on the target)",
    )

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


TRAIN, VALIDATION, TEST = range(3)


def split(dataset: DatasetRef, contract: DataContract, spec: SplitSpec, store: Datastore) -> SplitRefs:
    """Split `dataset`: stratified for classification, by each row's hash for large data, time-ordered when asked.

    Only the columns that decide the split are loaded (the target to stratify on, the time
    column, or a row group at a time to hash rows); each part is then written row group by row
    group, its rows in the dataset's order, a partitioned dataset into partitioned parts.

    Raises:
        DataError: too few rows, or a class too rare to appear in every part.
    """
    if spec.time_ordered:
        assigned = _time_ordered(dataset, contract, spec, store)
    elif spec.row_hash or (spec.row_hash is None and dataset.rows >= ROW_HASH_ROWS):
        assigned = _hashed(dataset, contract, spec, store)
    else:
        # Seeded by the rows, not the content hash: the same rows split alike from one file or from many.
        assigned = _shuffled(dataset, contract, spec, store, seed=derived_seed(spec.seed, str(dataset.rows)))
    for part, name in enumerate(PARTS):
        if not (assigned == part).any():
            raise DataError(f"{dataset.source}: {dataset.rows} rows leave the {name} split empty")
    schema = read_schema(dataset, store)
    sources = [f"{dataset.source}#{name}" for name in PARTS]
    if dataset.partitioned:
        train, validation, test = (
            _write_partitioned_part(dataset, store, schema, assigned == part, source)
            for part, source in enumerate(sources)
        )
    else:
        train, validation, test = _write_parts(dataset, store, schema, assigned, sources)
    return SplitRefs(train=train, validation=validation, test=test)


def _write_parts(
    dataset: DatasetRef, store: Datastore, schema: pa.Schema, assigned: np.ndarray, sources: list[str]
) -> list[DatasetRef]:
    """The parts of a one-file dataset from one read of it: each row group's rows are filtered into the three
    snapshots, written side by side (0.8 s instead of 1.1 s for 1M rows × 30 columns, each part read on its own)."""
    with ExitStack() as stack, ThreadPoolExecutor(len(PARTS), thread_name_prefix="mlpipe-split") as pool:
        writers = [stack.enter_context(SnapshotWriter(store, schema)) for _ in PARTS]
        first = 0
        for group in row_groups(dataset, store):
            chosen = assigned[first : first + group.num_rows]
            first += group.num_rows
            masks = [pa.array(chosen == part) for part in range(len(PARTS))]
            list(pool.map(_add_rows, writers, repeat(group), masks))  # all done (or an error raised) before the next
        return list(pool.map(SnapshotWriter.publish, writers, sources))


def _add_rows(writer: SnapshotWriter, rows: pa.Table, mask: pa.Array) -> None:
    writer.add(rows.filter(mask))


def _write_partitioned_part(
    dataset: DatasetRef, store: Datastore, schema: pa.Schema, chosen: np.ndarray, source: str
) -> DatasetRef:
    with PartitionedWriter(store) as writer:
        first = 0
        for partition in partitions(dataset):
            writer.write(_rows_of(partition, store, chosen[first : first + partition.rows]), schema, partition.source)
            first += partition.rows
        return writer.publish(source)


def _rows_of(dataset: DatasetRef, store: Datastore, chosen: np.ndarray) -> Iterator[pa.Table]:
    """The dataset's rows where `chosen` is true, in the dataset's order, a row group at a time."""
    first = 0
    for group in row_groups(dataset, store):
        yield group.filter(pa.array(chosen[first : first + group.num_rows]))
        first += group.num_rows


def derived_seed(seed: int, content_hash: str) -> int:
    """A 32-bit seed that changes with the data as well as with the user's seed."""
    return int(hashlib.sha256(f"{seed}:{content_hash}".encode()).hexdigest()[:8], 16)


def _shuffled(dataset: DatasetRef, contract: DataContract, spec: SplitSpec, store: Datastore, seed: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    labels = None
    if contract.task == "classification":
        labels = read_table(dataset, store, [contract.target])[contract.target].to_numpy(zero_copy_only=False)
    held_out = spec.validation_fraction + spec.test_fraction
    try:
        _, rest = train_test_split(np.arange(dataset.rows), test_size=held_out, random_state=seed, stratify=labels)
        _, test = train_test_split(
            rest,
            test_size=spec.test_fraction / held_out,
            random_state=seed,
            stratify=labels[rest] if labels is not None else None,
        )
    except ValueError as error:
        raise DataError(f"cannot split on target '{contract.target}': {error}") from None
    assigned = np.full(dataset.rows, TRAIN, dtype=np.uint8)
    assigned[rest] = VALIDATION
    assigned[test] = TEST
    return assigned


def _hashed(dataset: DatasetRef, contract: DataContract, spec: SplitSpec, store: Datastore) -> np.ndarray:
    """Each row's part from the hash of the seed and its values: the same row lands in the same part whatever the
    rest of the data (a retraining on more data keeps the old test rows in test; duplicates never straddle parts).
    """
    assigned = np.concatenate([_by_share(row_shares(group, spec.seed), spec) for group in row_groups(dataset, store)])
    if contract.task == "classification":
        _require_classes_in_training(dataset, contract, store, assigned)
    return assigned


def row_shares(rows: pa.Table, seed: int) -> np.ndarray:
    """Each row's place in [0, 1), from the hash of `seed` and the row's values alone."""
    key = hashlib.sha256(f"mlpipe-split:{seed}".encode()).hexdigest()[:16]
    hashes = pd.util.hash_pandas_object(rows.to_pandas(), index=False, hash_key=key).to_numpy()
    return (hashes >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def sample_rows(dataset: DatasetRef, store: Datastore, rows: int, seed: int) -> pd.DataFrame:
    """About `rows` of the dataset's rows (all of them if it has no more), chosen by their hash: read a row group at
    a time, the same rows whatever the partitioning."""
    if dataset.rows <= rows:
        return read_table(dataset, store).to_pandas()
    share = rows / dataset.rows
    return pa.concat_tables([share_of(group, share, seed) for group in row_groups(dataset, store)]).to_pandas()


def share_of(rows: pa.Table, share: float, seed: int) -> pa.Table:
    """The rows whose hash places them below `share`: about that share of them, the same rows in any file or group."""
    return rows.filter(pa.array(row_shares(rows, seed) < share))


def _by_share(shares: np.ndarray, spec: SplitSpec) -> np.ndarray:
    """Test for the lowest `test_fraction` of the hash range, validation next, training the rest."""
    return np.where(
        shares < spec.test_fraction,
        TEST,
        np.where(shares < spec.test_fraction + spec.validation_fraction, VALIDATION, TRAIN),
    ).astype(np.uint8)


def _require_classes_in_training(
    dataset: DatasetRef, contract: DataContract, store: Datastore, assigned: np.ndarray
) -> None:
    labels = read_table(dataset, store, [contract.target])[contract.target].to_pandas()
    classes = [set(labels[rows].dropna().unique().tolist()) for rows in (assigned != TRAIN, assigned == TRAIN)]
    missing = sorted(classes[0] - classes[1], key=str)  # the classes compared, not every row's label
    if missing:
        raise DataError(
            f"{dataset.source}: class(es) {missing} of target '{contract.target}' have no row in the train split: "
            "too rare to learn from"
        )


def _time_ordered(dataset: DatasetRef, contract: DataContract, spec: SplitSpec, store: Datastore) -> np.ndarray:
    if contract.time_column is None:
        raise DataError(f"{dataset.source}: a time-ordered split needs a time column (--time-column)")
    times = read_table(dataset, store, [contract.time_column])
    ordered = pc.sort_indices(times, sort_keys=[(contract.time_column, "ascending")]).to_numpy()
    n = len(ordered)
    test_start = n - round(n * spec.test_fraction)
    validation_start = test_start - round(n * spec.validation_fraction)
    assigned = np.full(n, TRAIN, dtype=np.uint8)
    assigned[ordered[validation_start:test_start]] = VALIDATION
    assigned[ordered[test_start:]] = TEST
    return assigned


def combine(parts: list[DatasetRef], store: Datastore, source: str) -> DatasetRef:
    """One snapshot of several (train + validation, to retrain a sweep's winner or fold for CV), streamed;
    partitioned if any of them is, keeping their partitions."""
    schema = read_schema(parts[0], store)
    if not any(part.partitioned for part in parts):
        groups = (group for part in parts for group in row_groups(part, store))
        return write_snapshot_batches(groups, schema, store, source)
    with PartitionedWriter(store) as writer:
        for partition in (partition for part in parts for partition in partitions(part)):
            writer.write(row_groups(partition, store), schema, partition.source)
        return writer.publish(source)


split_task = pipeline_task(split)
combine_task = pipeline_task(combine)
