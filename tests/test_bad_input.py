"""Bad input fails early with a message that names the problem; nothing is left behind."""

import gzip
import hashlib
from pathlib import Path

import pandas as pd
import pytest

from mlpipe.blocks import Datastore, WorkspaceConfig
from mlpipe.errors import ConfigError, DataError, ValidationFailed
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.data.ingest import ingest
from mlpipe.tasks.data.validate import validate
from tests.pipeline import ingest_frame, model_versions, run_training


def raw_hash(path: Path) -> str:
    """Ingest names a snapshot by the SHA-256 of the bytes it read."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def leftovers(store: Datastore) -> list[str]:
    folder = Path(store.url) / "datasets"
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_empty_file(tmp_path: Path, store: Datastore):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: file is empty"):
        ingest(str(path), store)
    assert leftovers(store) == []


def test_header_only_csv(tmp_path: Path, store: Datastore):
    path = tmp_path / "header.csv"
    path.write_text("a,b,default\n")
    with pytest.raises(DataError, match=r"header\.csv: no data rows"):
        ingest(str(path), store)


def test_corrupt_parquet(tmp_path: Path, store: Datastore):
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataError, match=r"corrupt\.parquet: not a valid Parquet file"):
        ingest(str(path), store)
    assert leftovers(store) == []


def test_unknown_file_type(tmp_path: Path, store: Datastore):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"whatever")
    with pytest.raises(DataError, match=r"data\.xlsx: unknown file type '\.xlsx'"):
        ingest(str(path), store)


@pytest.mark.parametrize(
    ("url", "message"),
    [("/no/such/dir/data.csv", "file not found"), ("nosuchproto://bucket/data.csv", "cannot open this URL")],
)
def test_unreadable_url(url: str, message: str, store: Datastore):
    with pytest.raises(DataError, match=message) as raised:
        ingest(url, store)
    assert url in str(raised.value)


def test_compressed_csv_is_read(tmp_path: Path, store: Datastore):
    path = tmp_path / "data.csv.gz"
    path.write_bytes(gzip.compress(b"x,y\n1,a\n2,b\n"))
    ref = ingest(str(path), store)
    assert ref.rows == 2 and ref.columns == {"x": "int64", "y": "str"}


def test_missing_target_names_the_column(demo_frame: pd.DataFrame):
    with pytest.raises(DataError, match=r"required column\(s\) \['defaulted'\] missing"):
        infer_contract(demo_frame, target="defaulted")


def test_all_null_column_is_rejected_when_inferring(demo_frame: pd.DataFrame):
    frame = demo_frame.assign(income=float("nan"))
    with pytest.raises(DataError, match="column 'income' is entirely null"):
        infer_contract(frame, target="default")


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


def test_failed_runs_register_nothing_and_leave_no_snapshot(workspace: WorkspaceConfig, data_dir: Path):
    corrupt = data_dir / "broken.parquet"
    corrupt.write_bytes(b"PAR1 definitely not parquet PAR1")
    before = leftovers(workspace.resolve().datastore)
    outcome = run_training(workspace, data=str(corrupt), target="default", name="never-registered")
    assert isinstance(outcome.error, DataError)
    assert "broken.parquet: not a valid Parquet file" in str(outcome.error)
    assert outcome.task_states["ingest"] == "Failed"
    assert model_versions(workspace, "never-registered") == []
    assert leftovers(workspace.resolve().datastore) == before


def test_retraining_without_a_required_column_fails_and_keeps_the_champion(
    workspace: WorkspaceConfig, data_dir: Path, demo_frame: pd.DataFrame
):
    first, second = data_dir / "contract-1.parquet", data_dir / "contract-2.parquet"
    demo_frame.to_parquet(first, index=False)
    demo_frame.drop(columns=["credit_score"]).to_parquet(second, index=False)
    base = {"target": "default", "name": "contract-demo", "exclude": ["application_id"]}
    assert run_training(workspace, data=str(first), **base).error is None

    before = set(leftovers(workspace.resolve().datastore))
    outcome = run_training(workspace, data=str(second), **base)
    assert isinstance(outcome.error, DataError)
    assert "required column(s) ['credit_score'] missing" in str(outcome.error)
    assert outcome.task_states["validate"] == "Failed"
    assert "split" not in outcome.task_states  # nothing is derived from data that failed validation
    new_files = set(leftovers(workspace.resolve().datastore)) - before
    assert new_files == {f"{raw_hash(second)}.parquet"}  # only the immutable raw snapshot
    assert [str(v.version) for v in model_versions(workspace, "contract-demo")] == ["1"]

    dropped = run_training(workspace, data=str(first), **{**base, "exclude": ["application_id", "income"]})
    assert isinstance(dropped.error, ConfigError)
    assert "excluded column(s) ['income'] are features in the contract of model contract-demo" in str(dropped.error)
