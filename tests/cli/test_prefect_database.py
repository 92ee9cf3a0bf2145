"""The temporary API prepares its database (migrations, block types) only when this Prefect has not already."""

import json
import os
import sqlite3
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import pytest

from mlpipe.cli.prefect_database import PREPARED, PREPARING, PrefectDatabase

pytestmark = pytest.mark.unit

START_AND_USE = """
import json, urllib.request, uuid, psutil
from mlpipe.cli.prefect_database import PREPARED
from mlpipe.cli.temporary_api import TemporaryApi
api = TemporaryApi.start()
api.wait()
environment = psutil.Process(api.process.pid).environ()
headers = {"Content-Type": "application/json"}
flow = urllib.request.Request(
    api.url + "/flows/", data=json.dumps({"name": uuid.uuid4().hex}).encode(), method="POST", headers=headers
)
blocks = urllib.request.Request(api.url + "/block_types/filter", data=b"{}", method="POST", headers=headers)
with urllib.request.urlopen(flow, timeout=30) as created, urllib.request.urlopen(blocks, timeout=30) as found:
    used = {"created": created.status, "block types": len(json.load(found)) > 0}
api.stop()
print(json.dumps({**used, "skipped": {name: environment.get(name) for name in PREPARED}}))
"""
SKIPPED = {"created": 201, "block types": True, "skipped": PREPARED}
PREPARES = {"created": 201, "block types": True, "skipped": {**dict.fromkeys(PREPARED), **PREPARING}}


def start_temporary_api(home: Path) -> dict[str, object]:
    """Start a command's temporary API on `home`, write and read through it, stop it; what it did."""
    environment = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    environment.pop("PREFECT_API_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", START_AND_USE], env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return outcome


def a_migrated_database_with_block_types(path: Path) -> None:
    """What `PrefectDatabase` reads of a prepared database: its Alembic revision and block types."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES ('a3b9c7d2e5f1')")
        db.execute("CREATE TABLE block_type (id CHAR(36))")
        db.execute("INSERT INTO block_type VALUES ('secret')")


def test_a_database_is_prepared_once_per_prefect_and_again_when_it_is_replaced(tmp_path: Path, monkeypatch):
    home = tmp_path / "prefect-home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    database = PrefectDatabase.default()
    assert database is not None and database.path == home / "prefect.db"

    assert start_temporary_api(home) == PREPARES  # a new database
    assert database.prepared()
    assert start_temporary_api(home) == SKIPPED  # nothing left to do

    database.path.unlink()  # the record stays, naming a revision no database is at (and so does Prefect's memo)
    assert not database.prepared()
    assert start_temporary_api(home) == PREPARES


def test_another_prefect_another_collection_or_no_block_types_prepare_it_again(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    database = PrefectDatabase.default()
    assert database is not None
    a_migrated_database_with_block_types(database.path)
    database.record_prepared()
    assert database.prepared()
    recorded = json.loads(database.record.read_text())
    assert recorded["collections"] == [f"prefect_dask=prefect-dask-{version('prefect-dask')}"]

    for changed in ({"prefect": "3.0.0"}, {"collections": []}):
        database.record.write_text(json.dumps({**recorded, **changed}))
        assert not database.prepared(), changed
    database.record.write_text(json.dumps(recorded))
    with sqlite3.connect(database.path) as db:
        db.execute("DELETE FROM block_type")
    assert not database.prepared()


def test_a_record_that_cannot_be_written_leaves_the_next_start_to_prepare_again(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    database = PrefectDatabase.default()
    assert database is not None
    a_migrated_database_with_block_types(database.path)
    database.record.mkdir()  # where the record goes, something it cannot replace
    database.record_prepared()
    assert not database.prepared()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["prefect.db", database.record.name]


@pytest.mark.parametrize(
    "setting",
    [
        "PREFECT_API_DATABASE_CONNECTION_URL",
        "PREFECT_SERVER_DATABASE_MIGRATE_ON_START",
        "PREFECT_SERVER_REGISTER_BLOCKS_ON_START",
        "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION",
    ],
)
def test_a_users_own_database_setting_leaves_the_start_to_prefect(setting: str, tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    assert PrefectDatabase.default() is not None
    monkeypatch.setenv(setting, "anything")
    assert PrefectDatabase.default() is None


def test_a_database_setting_in_the_active_profile_leaves_the_start_to_prefect(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    (tmp_path / "profiles.toml").write_text(
        'active = "team"\n[profiles.team]\nPREFECT_API_DATABASE_CONNECTION_URL = "postgresql+asyncpg://db/prefect"\n'
    )
    assert PrefectDatabase.default() is None
