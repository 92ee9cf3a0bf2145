"""`mlpipe gc`: what registered versions use stays; orphan snapshots, abandoned staging and stale results go."""

import base64
import json
from pathlib import Path

import pandas as pd
import pytest

from mlpipe.blocks import Datastore, MlflowConnection, WorkspaceConfig
from mlpipe.tasks.gc import collect, plan
from tests.pipeline import ingest_frame, run_cli, run_training

pytestmark = pytest.mark.flow


def result_record(path: Path, payload: str) -> None:
    """A cached result as Prefect stores one: JSON whose `result` is base64."""
    path.write_text(json.dumps({"metadata": {}, "result": base64.b64encode(payload.encode()).decode()}))


def test_gc_keeps_what_registered_versions_use_and_removes_the_rest(tmp_path: Path, demo_csv: Path, demo_frame):
    workspace = WorkspaceConfig(
        datastore=Datastore(url=str(tmp_path / "store")),
        mlflow=MlflowConnection(
            tracking_uri=f"sqlite:///{tmp_path / 'mlflow.db'}", artifact_location=(tmp_path / "artifacts").as_uri()
        ),
    )
    trained = run_training(workspace, data=str(demo_csv), target="default", name="gc-demo", exclude=["application_id"])
    assert trained.error is None, trained.error
    resolved = workspace.resolve()
    store, splits = resolved.datastore, trained.summary.splits
    used = [trained.summary.dataset, splits.train, splits.validation, splits.test]
    orphan = ingest_frame(pd.DataFrame(demo_frame.head(50)), tmp_path / "orphan.parquet", store)
    results = tmp_path / "results"
    results.mkdir()
    result_record(results / "stale", f"DatasetRef uri={orphan.uri}")
    result_record(results / "fresh", f"DatasetRef uri={splits.train.uri}")
    staging = tmp_path / "scores" / "_staging" / "abandoned-run"
    (staging / "data").mkdir(parents=True)
    (staging / "data" / "part-00000.parquet").write_bytes(b"x" * 100)
    snapshots = sorted((tmp_path / "store" / "datasets").iterdir())

    config = tmp_path / "project.yaml"
    config.write_text(
        f"datastore: {{url: '{tmp_path / 'store'}'}}\n"
        f"mlflow: {{tracking_uri: '{resolved.mlflow.tracking_uri}', "
        f"artifact_location: '{resolved.mlflow.artifact_location}'}}\n"
    )
    dry = run_cli("gc", "--dry-run", "--min-age-hours", "0", "--config", str(config), cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert "would free" in dry.stdout and "snapshot: 1 (" in dry.stdout
    assert sorted((tmp_path / "store" / "datasets").iterdir()) == snapshots  # a dry run removes nothing

    assert plan(store, resolved.mlflow, results, [str(tmp_path / "scores")], min_age=3600).items == []  # all recent
    found = plan(store, resolved.mlflow, results, [str(tmp_path / "scores")], min_age=0)
    assert {item.kind: Path(item.path.removeprefix("file://")).name for item in found.items} == {
        "snapshot": f"{orphan.content_hash}.parquet",
        "cached result": "stale",
        "scoring staging": "abandoned-run",
    }
    orphan_file = Path(orphan.uri.removeprefix("file://"))
    assert found.bytes == orphan_file.stat().st_size + (results / "stale").stat().st_size + 100
    collect(found)
    assert not orphan_file.exists() and not staging.exists()
    assert all(Path(ref.uri.removeprefix("file://")).exists() for ref in used)
    assert sorted(path.name for path in results.iterdir()) == ["fresh"]
