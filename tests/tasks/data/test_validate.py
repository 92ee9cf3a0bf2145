"""Validation names every column that breaks the contract, and how."""

from pathlib import Path

import pandas as pd
import pytest

from mlpipe.blocks import Datastore
from mlpipe.errors import DataError, ValidationFailed
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.data.validate import validate
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
