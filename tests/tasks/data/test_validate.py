"""Validation names every column that breaks the contract, and how."""

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlpipe.blocks import Datastore
from mlpipe.errors import DataError, ValidationFailed
from mlpipe.tasks import datasets
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.data.ingest import ingest
from mlpipe.tasks.data.validate import validate
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


def test_validation_flags_out_of_range_and_nulls(tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame):
    contract = infer_contract(demo_frame, target="default", exclude=["application_id"])
    broken = demo_frame.copy()
    broken.loc[: len(broken) // 2, "age"] = -5  # a negative age: the inferred range starts at 0
    broken.loc[: len(broken) // 2, "employment_years"] = float("nan")
    with pytest.raises(ValidationFailed) as raised:
        validate(ingest_frame(broken, tmp_path / "range.parquet", store), contract, store)
    message = str(raised.value)
    assert "column 'age': expect_column_values_to_be_between" in message
    assert "column 'employment_years': expect_column_values_to_not_be_null" in message


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
    broken = demo_frame.copy()
    broken.loc[len(broken) - 30 :, "age"] = -5  # only the last row group breaks the range: 1.0% of all values
    with pytest.raises(ValidationFailed, match=r"column 'age': expect_column_values_to_be_between .* \(1\.0% unexp"):
        validate(ingest_in_row_groups(broken, tmp_path / "late.parquet", store), contract, store)


def ingest_in_row_groups(frame: pd.DataFrame, path: Path, store: Datastore) -> DatasetRef:
    frame.to_parquet(path, index=False, row_group_size=300)
    return ingest(str(path), store)
