"""Partitioned datasets: a folder, a glob or a large file ingests as parts that every step treats as one dataset."""

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.dataset as pads
import pytest

from mlpipe.blocks import Datastore
from mlpipe.errors import DataError, ValidationFailed
from mlpipe.tasks.data import ingest as ingest_module
from mlpipe.tasks.data.contract_inference import infer_contract, infer_dataset_contract
from mlpipe.tasks.data.ingest import ingest
from mlpipe.tasks.data.split import SplitRefs, SplitSpec, combine, sample_rows, split
from mlpipe.tasks.data.validate import validate
from mlpipe.tasks.datasets import DatasetRef, data_files, partitions, read_snapshot, read_table

pytestmark = pytest.mark.unit

PARTS = 8


def one_and_eight(frame: pd.DataFrame, folder: Path, store: Datastore) -> tuple[DatasetRef, DatasetRef]:
    """The same rows ingested from one CSV file and from a folder of `PARTS` CSV files."""
    frame.to_csv(folder / "one.csv", index=False)
    (folder / "parts").mkdir()
    for index, rows in enumerate(np.array_split(np.arange(len(frame)), PARTS)):
        frame.iloc[rows].to_csv(folder / "parts" / f"rows-{index}.csv", index=False)
    return ingest(str(folder / "one.csv"), store), ingest(str(folder / "parts"), store)


def members(parts: SplitRefs, store: Datastore) -> list[set[int]]:
    return [set(read_snapshot(part, store)["application_id"]) for part in (parts.train, parts.validation, parts.test)]


def test_eight_partitions_give_the_same_contract_validation_errors_and_split_as_one_file(
    tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame
):
    broken = demo_frame.copy()
    broken.loc[2000:2400, "income"] = np.nan  # in the 6th and 7th of 8 parts
    one, eight = one_and_eight(broken, tmp_path, store)
    assert eight.partitioned and len(eight.parts) == PARTS and eight.rows == one.rows == len(demo_frame)
    assert read_table(eight, store).equals(read_table(one, store))
    assert pads.dataset(data_files(eight, store)).to_table().num_rows == len(demo_frame)  # any Parquet reader

    exclude = ["application_id"]
    inferred = infer_contract(read_snapshot(one, store), "default", exclude=exclude)  # as read back from CSV
    assert infer_dataset_contract(eight, store, "default", exclude=exclude) == inferred  # never read whole
    assert infer_dataset_contract(one, store, "default", exclude=exclude) == inferred
    sampled = [set(sample_rows(dataset, store, 600, seed=1)["application_id"]) for dataset in (one, eight)]
    assert sampled[0] == sampled[1] and 450 < len(sampled[0]) < 750  # a trial's sample: same rows, any layout
    for spec in (SplitSpec(seed=4), SplitSpec(seed=4, row_hash=True)):
        contract = infer_contract(demo_frame, "default", exclude=exclude)
        from_eight, from_one = split(eight, contract, spec, store), split(one, contract, spec, store)
        assert members(from_eight, store) == members(from_one, store)
        assert all(len(part.parts) == PARTS for part in (from_eight.train, from_eight.validation, from_eight.test))

    strict = infer_contract(demo_frame, "default", exclude=exclude)  # income is never null
    errors = []
    for dataset in (one, eight):
        with pytest.raises(ValidationFailed) as raised:
            validate(dataset, strict, store)
        errors.append(str(raised.value).split(": ", 1)[1])  # after the source's name
    assert "column 'income': expect_column_values_to_not_be_null" in errors[0]
    assert errors[1] == errors[0] + " in part-00005.parquet, part-00006.parquet"


def test_a_contract_inferred_part_by_part_is_the_contract_of_the_whole(tmp_path: Path, store: Datastore):
    frame = pd.DataFrame(
        {
            "label": ["a", "b"] * 60,
            "city": [f"c{i}" for i in range(120)],  # 15 a part, 120 in all: too many to be categories
            "late": [None] * 60 + [1.5] * 60,  # no values in the first parts
            "flag": [None] * 60 + ["yes", "no"] * 30,  # strings from the fifth part on
        }
    )
    (tmp_path / "parts").mkdir()
    for index in range(8):
        frame.iloc[index * 15 : (index + 1) * 15].to_parquet(tmp_path / "parts" / f"{index}.parquet")
    dataset = ingest(str(tmp_path / "parts"), store)
    contract = infer_dataset_contract(dataset, store, "label")
    assert contract == infer_contract(frame, "label")
    assert contract.column("city").observed is None and contract.column("late").kind == "numeric"
    assert contract.column("flag").kind == "string" and contract.column("label").allowed_values == ["a", "b"]


def test_a_row_lands_in_the_same_part_whatever_the_rest_of_the_data(
    tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame
):
    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    spec = SplitSpec(seed=7, row_hash=True)
    (tmp_path / "first").mkdir()
    demo_frame.iloc[:2000].to_parquet(tmp_path / "first" / "a.parquet")
    first = split(ingest(str(tmp_path / "first"), store), contract, spec, store)
    demo_frame.iloc[2000:].to_parquet(tmp_path / "first" / "b.parquet")
    grown = split(ingest(str(tmp_path / "first"), store), contract, spec, store)
    for before, after in zip(members(first, store), members(grown, store), strict=True):
        assert before <= after  # the first 2000 rows kept their parts when 1000 more arrived
    rates = [read_snapshot(part, store)["default"].mean() for part in (grown.train, grown.validation, grown.test)]
    assert max(rates) - min(rates) < 0.08  # not stratified, but by numbers close


def test_files_typed_differently_take_the_wider_type_and_different_columns_are_an_error(
    tmp_path: Path, store: Datastore
):
    (tmp_path / "mixed").mkdir()
    pd.DataFrame({"x": [1, 2], "y": ["a", "b"], "z": [1, 2]}).to_csv(tmp_path / "mixed" / "1.csv", index=False)
    pd.DataFrame({"x": [2.5, 3.5], "y": ["c", "d"], "z": ["x9", "3"]}).to_csv(tmp_path / "mixed" / "2.csv", index=False)
    mixed = ingest(str(tmp_path / "mixed" / "*.csv"), store)
    assert mixed.columns == {"x": "float64", "y": "str", "z": "str"}
    assert read_snapshot(mixed, store)["x"].tolist() == [1.0, 2.0, 2.5, 3.5]
    assert read_snapshot(mixed, store)["z"].tolist() == ["1", "2", "x9", "3"]

    pd.DataFrame({"x": [1], "w": [2]}).to_csv(tmp_path / "mixed" / "3.csv", index=False)
    with pytest.raises(DataError, match=r"3\.csv: columns \['w', 'x'\] differ from the first file's"):
        ingest(str(tmp_path / "mixed"), store)
    with pytest.raises(DataError, match="no Parquet"):
        ingest(str(tmp_path / "mixed" / "*.json"), store)


def test_a_large_file_is_ingested_in_parts_and_a_split_keeps_them(
    tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "large.parquet"
    demo_frame.to_parquet(path, row_group_size=250)
    monkeypatch.setattr(ingest_module, "PARTITION_FILE_BYTES", 1)
    monkeypatch.setattr(ingest_module, "PART_BYTES", 1)  # a part per row group
    dataset = ingest(str(path), store)
    assert len(dataset.parts) == 12 and [p.rows for p in partitions(dataset)] == [250] * 12
    assert read_snapshot(dataset, store).equals(pd.read_parquet(path))
    assert ingest(str(path), store) == dataset  # same file, same dataset: nothing written twice

    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    parts = split(dataset, contract, SplitSpec(), store)
    both = combine([parts.train, parts.validation], store, "train+validation")
    assert both.partitioned and both.rows == parts.train.rows + parts.validation.rows
    assert set(read_snapshot(both, store)["application_id"]) == set().union(*members(parts, store)[:2])
