"""Split: deterministic, stratified, seeded, or time-ordered."""

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlpipe.blocks import Datastore
from mlpipe.errors import DataError
from mlpipe.tasks import datasets
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.data.ingest import ingest
from mlpipe.tasks.data.split import SplitSpec, combine, derived_seed, row_shares, split
from tests.pipeline import ingest_frame, leftovers

pytestmark = pytest.mark.unit


def test_split_is_deterministic_stratified_and_seeded(tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame):
    ref = ingest_frame(demo_frame, tmp_path / "data.parquet", store)
    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    first = split(ref, contract, SplitSpec(seed=1), store)
    again = split(ref, contract, SplitSpec(seed=1), store)
    other = split(ref, contract, SplitSpec(seed=2), store)
    assert first == again
    assert first.test.content_hash != other.test.content_hash
    assert first.train.rows + first.validation.rows + first.test.rows == len(demo_frame)
    rates = [pd.read_parquet(part.uri)["default"].mean() for part in (first.train, first.validation, first.test)]
    assert max(rates) - min(rates) < 0.01
    assert derived_seed(1, "a") != derived_seed(1, "b")


def test_time_ordered_split_puts_newest_rows_in_test(tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame):
    shuffled = demo_frame.sample(frac=1.0, random_state=0)
    ref = ingest_frame(shuffled, tmp_path / "data.parquet", store)
    contract = infer_contract(shuffled, "default", time_column="applied_at", exclude=["application_id"])
    parts = split(ref, contract, SplitSpec(time_ordered=True), store)
    train, test = pd.read_parquet(parts.train.uri), pd.read_parquet(parts.test.uri)
    assert train["applied_at"].max() <= test["applied_at"].min()
    assert "applied_at" not in contract.feature_names


def test_time_ordered_split_without_time_column_is_an_error(tmp_path, store, demo_frame):
    ref = ingest_frame(demo_frame, tmp_path / "data.parquet", store)
    contract = infer_contract(demo_frame, "default")
    with pytest.raises(DataError, match="needs a time column"):
        split(ref, contract, SplitSpec(time_ordered=True), store)


def test_split_goes_row_group_by_row_group_and_keeps_each_row_once(tmp_path, store, demo_frame, monkeypatch):
    monkeypatch.setattr(datasets, "ROW_GROUP_BYTES", 1 << 14)
    path = tmp_path / "groups.parquet"
    demo_frame.to_parquet(path, row_group_size=300)
    ref = ingest(str(path), store)
    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    parts = split(ref, contract, SplitSpec(seed=3), store)
    ids = [set(pd.read_parquet(part.uri)["application_id"]) for part in (parts.train, parts.validation, parts.test)]
    assert sum(len(part) for part in ids) == len(set().union(*ids)) == len(demo_frame)
    assert all(pq.ParquetFile(part.uri).num_row_groups > 1 for part in (parts.train, parts.validation, parts.test))
    both = combine([parts.train, parts.validation], store, "train+validation")
    assert set(pd.read_parquet(both.uri)["application_id"]) == ids[0] | ids[1]


def test_a_class_the_row_hash_keeps_out_of_training_fails_naming_it_and_writes_nothing(tmp_path, store, demo_frame):
    rare = demo_frame.copy()
    spec = SplitSpec(row_hash=True, seed=5)
    for row in range(len(rare)):  # one row of a third class, moved until its own hash puts it in the test part
        rare.loc[row, "default"] = 2
        if row_shares(pa.Table.from_pandas(rare.iloc[[row]], preserve_index=False), spec.seed)[0] < spec.test_fraction:
            break
        rare.loc[row, "default"] = demo_frame.loc[row, "default"]
    ref = ingest_frame(rare, tmp_path / "data.parquet", store)
    before = leftovers(store)
    with pytest.raises(DataError, match=r"class\(es\) \[2\] of target 'default' have no row in the train split"):
        split(ref, infer_contract(rare, "default", exclude=["application_id"]), spec, store)
    assert leftovers(store) == before


def test_a_row_group_that_cannot_be_read_while_the_parts_are_written_leaves_nothing(
    tmp_path, store, demo_frame, monkeypatch
):
    """The three parts are written side by side from one read: a failure part-way publishes none and leaves no
    temporary file (here a damaged page in the last row group of a column the split itself does not read)."""
    monkeypatch.setattr(datasets, "ROW_GROUP_BYTES", 1 << 14)
    path = tmp_path / "groups.parquet"
    demo_frame.to_parquet(path, row_group_size=300)
    ref = ingest(str(path), store)
    snapshot = Path(datasets.snapshot_path(store, ref.content_hash))
    metadata = pq.ParquetFile(snapshot).metadata
    assert metadata.num_row_groups > 2
    last = metadata.row_group(metadata.num_row_groups - 1)
    chunk = next(last.column(i) for i in range(last.num_columns) if last.column(i).path_in_schema == "income")
    damaged = bytearray(snapshot.read_bytes())
    damaged[chunk.data_page_offset : chunk.data_page_offset + 64] = bytes(64)
    snapshot.write_bytes(bytes(damaged))
    before = leftovers(store)
    with pytest.raises(OSError) as raised:
        split(ref, infer_contract(demo_frame, "default", exclude=["application_id"]), SplitSpec(seed=3), store)
    # Checked while the error (and so its frames) is held, as a worker holds a failed task's: a temporary
    # file must go when the step fails, not when the garbage collector finalizes what the step left open.
    assert leftovers(store) == before, raised.value
