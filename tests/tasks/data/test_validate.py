"""Validation names every column that breaks the contract, and how."""

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from mlpipe.blocks import Datastore
from mlpipe.errors import DataError, ValidationFailed
from mlpipe.tasks import datasets
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.data import validate as validate_module
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.data.ingest import ingest
from mlpipe.tasks.data.validate import check_frame, validate
from mlpipe.tasks.datasets import DatasetRef, snapshot_path
from tests.pipeline import ingest_frame

pytestmark = pytest.mark.unit


def test_validation_names_every_broken_column(tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame):
    contract = infer_contract(demo_frame, target="default", exclude=["application_id"])
    broken = demo_frame.drop(columns=["region"]).assign(
        income=demo_frame["income"].astype(str), credit_score=float("nan")
    )
    with pytest.raises(DataError, match=r"required column\(s\) \['region'\] missing"):
        validate(ingest_frame(broken, tmp_path / "missing.parquet", store), contract, store)
    broken = demo_frame.assign(income=demo_frame["income"].astype(str), credit_score=float("nan"))
    with pytest.raises(ValidationFailed) as raised:
        validate(ingest_frame(broken, tmp_path / "types.parquet", store), contract, store)
    message = str(raised.value)
    assert "column 'income': expected numeric, got dtype str" in message
    assert "column 'credit_score': entirely null" in message


def test_validation_flags_nulls_beyond_the_contracts_limit(tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame):
    contract = infer_contract(demo_frame, target="default", exclude=["application_id"])
    broken = demo_frame.copy()
    broken.loc[: len(broken) // 2, "employment_years"] = float("nan")
    with pytest.raises(ValidationFailed) as raised:
        validate(ingest_frame(broken, tmp_path / "nulls.parquet", store), contract, store)
    assert "column 'employment_years': expect_column_values_to_not_be_null" in str(raised.value)


def test_values_outside_the_training_range_and_new_categories_are_reported_not_enforced(
    tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame
):
    """Drifted data is what retraining exists to learn from: inferred limits are observations, not promises."""
    contract = infer_contract(demo_frame, target="default", exclude=["application_id"])
    drifted = demo_frame.assign(
        age=demo_frame["age"] * 3,  # most values beyond the oldest applicant seen in training
        income=-demo_frame["income"],  # below the training minimum (and below zero)
        region=demo_frame["region"].where(demo_frame.index % 3 != 0, "atlantis"),  # a third in a new region
    )
    dataset = ingest_frame(drifted, tmp_path / "drifted.parquet", store)
    assert validate(dataset, contract, store) == dataset
    check = check_frame(drifted, contract, "drifted.parquet")
    assert check.failures == []
    signals = "; ".join(check.signals)
    assert "column 'age': expect_column_values_to_be_between" in signals
    assert "column 'income': expect_column_values_to_be_between" in signals
    assert "column 'region': expect_column_values_to_be_in_set" in signals and "atlantis" in signals
    assert "loan_amount" not in signals  # an undrifted column raises no signal


def test_declared_limits_in_a_contract_file_are_enforced_naming_file_column_and_expectation(
    tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame
):
    contract = infer_contract(demo_frame, target="default", exclude=["application_id"])
    declared = contract.model_dump()
    for column in declared["columns"]:
        if column["name"] == "age":
            column.update(minimum=18, maximum=100)
        if column["name"] == "region":
            column.update(allowed_values=["central", "east", "north", "south", "west"])  # a closed set
    path = tmp_path / "loans-contract.yaml"
    path.write_text(yaml.safe_dump(declared))
    contract = DataContract.from_file(path)
    broken = demo_frame.copy()
    broken.loc[:9, "age"] = -5  # ten impossible ages
    broken.loc[:9, "region"] = "atlantis"  # ten rows outside the declared set (well under 1 %)
    with pytest.raises(ValidationFailed) as raised:
        validate(ingest_frame(broken, tmp_path / "loans.parquet", store), contract, store)
    message = str(raised.value)
    assert "loans.parquet" in message and "loans-contract.yaml" in message
    assert "column 'age': expect_column_values_to_be_between {'min_value': 18.0, 'max_value': 100.0}" in message
    assert "column 'region': expect_column_values_to_be_in_set" in message


def test_validation_row_group_by_row_group_judges_the_whole_data(tmp_path, store, demo_frame, monkeypatch):
    monkeypatch.setattr(datasets, "ROW_GROUP_BYTES", 1 << 14)
    contract = infer_contract(demo_frame, target="default", exclude=["application_id"])
    limit = next(c for c in contract.columns if c.name == "income").max_null_fraction
    nulls = int(len(demo_frame) * limit / 2) or 1  # under the limit overall, all of it in the first row groups
    gappy = demo_frame.copy()
    gappy.loc[: nulls - 1, "income"] = float("nan")
    ref = ingest_in_row_groups(gappy, tmp_path / "gappy.parquet", store)
    assert pq.ParquetFile(snapshot_path(store, ref.content_hash)).num_row_groups > 3
    assert validate(ref, contract, store) == ref
    declared = contract.model_dump()
    next(c for c in declared["columns"] if c["name"] == "age")["minimum"] = 0
    contract = DataContract.model_validate(declared)
    broken = demo_frame.copy()
    broken.loc[len(broken) - 30 :, "age"] = -5  # only the last row group breaks the range: 1.0% of all values
    with pytest.raises(ValidationFailed, match=r"column 'age': expect_column_values_to_be_between .* \(1\.0% unexp"):
        validate(ingest_in_row_groups(broken, tmp_path / "late.parquet", store), contract, store)


def ingest_in_row_groups(frame: pd.DataFrame, path: Path, store: Datastore) -> DatasetRef:
    frame.to_parquet(path, index=False, row_group_size=300)
    return ingest(str(path), store)


def test_a_large_frame_checked_column_by_column_in_threads_gets_the_same_verdict(demo_frame, monkeypatch):
    """Large frames are checked a column at a time in threads, small ones by one validator: same lines, same order."""
    declared = infer_contract(demo_frame, target="default", exclude=["application_id"]).model_dump()
    next(c for c in declared["columns"] if c["name"] == "age")["minimum"] = 0
    contract = DataContract.model_validate(declared)
    broken = demo_frame.assign(
        age=demo_frame["age"].where(demo_frame.index % 10 != 0, -5),  # a promise broken
        income=demo_frame["income"] * 5,  # observations: beyond the training range, in a new category
        region=demo_frame["region"].where(demo_frame.index % 3 != 0, "atlantis"),
    )
    broken.loc[: len(broken) // 2, "employment_years"] = float("nan")
    at_once = check_frame(broken, contract, "broken.parquet")
    monkeypatch.setattr(validate_module, "COLUMNWISE_ROWS", 1)
    by_column = check_frame(broken, contract, "broken.parquet")
    assert len(at_once.failures) == 2 and len(at_once.signals) == 3
    assert by_column == at_once
