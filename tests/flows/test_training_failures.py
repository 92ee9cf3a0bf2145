"""A failed training run registers nothing and leaves nothing behind; the champion is kept."""

import hashlib
from pathlib import Path

import pandas as pd
import pytest

from mlpipe.blocks import WorkspaceConfig
from mlpipe.errors import ConfigError, DataError
from tests.pipeline import leftovers, model_versions, run_training

pytestmark = pytest.mark.flow


def raw_hash(path: Path) -> str:
    """Ingest names a snapshot by the SHA-256 of the bytes it read."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


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
