"""Contract inference: task, features, kinds, and a user's contract file."""

from pathlib import Path

import pandas as pd
import pytest

from mlpipe.blocks import Datastore
from mlpipe.errors import ConfigError, DataError
from mlpipe.tasks.data.contract_inference import infer_contract, infer_task, resolve_contract
from tests.pipeline import ingest_frame

pytestmark = pytest.mark.unit


def test_task_is_inferred_from_the_target():
    assert infer_task(pd.Series([0, 1, 1], name="y")) == "classification"
    assert infer_task(pd.Series(["yes", "no"], name="y")) == "classification"
    assert infer_task(pd.Series([0.5, 1.7, 2.2], name="y")) == "regression"
    assert infer_task(pd.Series(range(100), name="y")) == "regression"


def test_contract_skips_ids_and_timestamps(demo_frame: pd.DataFrame):
    assert "applied_at" not in infer_contract(demo_frame, "default").feature_names  # datetimes are never features
    contract = infer_contract(demo_frame, "default", time_column="applied_at", exclude=["application_id"])
    assert contract.time_column == "applied_at" and "applied_at" not in contract.feature_names
    assert "application_id" not in contract.feature_names
    assert contract.column("default").allowed_values == [0, 1]  # the classes: a model's outputs


def test_inferred_ranges_and_category_sets_are_observations_not_limits(demo_frame: pd.DataFrame):
    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    region, age = contract.column("region"), contract.column("age")
    assert region.allowed_values is None and age.minimum is None and age.maximum is None
    assert region.observed is not None and region.observed.values == ["central", "east", "north", "south", "west"]
    assert age.observed is not None
    assert (age.observed.minimum, age.observed.maximum) == (demo_frame["age"].min(), demo_frame["age"].max())


def test_user_contract_file_is_loaded_and_checked(tmp_path: Path, demo_frame: pd.DataFrame):
    from mlpipe.tasks.contract import DataContract

    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    path = tmp_path / "contract.json"
    path.write_text(contract.to_json())
    assert DataContract.from_file(path) == contract.model_copy(update={"declared_in": str(path)})
    path.write_text('{"target": "default", "task": "clustering", "columns": []}')
    with pytest.raises(ConfigError, match=r"contract\.json: field 'task'"):
        DataContract.from_file(path)


def test_nullable_boolean_objects_are_boolean_features():
    from mlpipe.tasks.contract import column_kind

    assert column_kind(pd.Series([True, None, False], dtype=object)) == "boolean"
    assert column_kind(pd.Series(["a", None, "b"], dtype=object)) == "string"
    assert column_kind(pd.Series([{"a": 1}, None], dtype=object)) is None


def test_missing_target_names_the_column(demo_frame: pd.DataFrame):
    with pytest.raises(DataError, match=r"required column\(s\) \['defaulted'\] missing"):
        infer_contract(demo_frame, target="defaulted")


def test_all_null_column_is_rejected_when_inferring(demo_frame: pd.DataFrame):
    frame = demo_frame.assign(income=float("nan"))
    with pytest.raises(DataError, match="column 'income' is entirely null"):
        infer_contract(frame, target="default")


def test_the_champions_contract_is_held_to_before_anything_is_inferred(
    tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame
):
    """The contract step gets the champion's contract as an input: it asks no registry itself."""
    champion = infer_contract(demo_frame, "default", exclude=["application_id"])
    narrower = demo_frame.drop(columns=["credit_score"])
    dataset = ingest_frame(narrower, tmp_path / "narrower.parquet", store)
    held = resolve_contract(dataset, "default", "credit", store, exclude=["application_id"], champion=champion)
    assert held == champion and "credit_score" in held.feature_names  # so validation will name the missing column
    inferred = resolve_contract(dataset, "default", "credit", store, exclude=["application_id"])
    assert "credit_score" not in inferred.feature_names
    with pytest.raises(ConfigError, match=r"target 'region' differs from the contract's target 'default'"):
        resolve_contract(dataset, "region", "credit", store, champion=champion)


def test_excluding_a_column_the_data_does_not_have_is_an_error(
    tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame
):
    dataset = ingest_frame(demo_frame, tmp_path / "loans.parquet", store)
    with pytest.raises(ConfigError, match=r"excluded column\(s\) \['applicaton_id'\] are not in the data"):
        resolve_contract(dataset, "default", "credit", store, exclude=["applicaton_id"])
