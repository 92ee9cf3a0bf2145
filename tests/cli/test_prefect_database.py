"""The temporary API migrates its database only when this Prefect has not already brought it up to date."""

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from mlpipe.cli.prefect_database import PrefectDatabase

pytestmark = pytest.mark.unit

START_AND_USE = """
import json, urllib.request, uuid, psutil
from mlpipe.cli.temporary_api import TemporaryApi
api = TemporaryApi.start()
api.wait()
flow = json.dumps({"name": uuid.uuid4().hex}).encode()
headers = {"Content-Type": "application/json"}
request = urllib.request.Request(api.url + "/flows/", data=flow, method="POST", headers=headers)
with urllib.request.urlopen(request, timeout=30) as response:
    created = response.status
environment = psutil.Process(api.process.pid).environ()
api.stop()
print(json.dumps({"created": created, "migrate": environment.get("PREFECT_SERVER_DATABASE_MIGRATE_ON_START")}))
"""


def start_temporary_api(home: Path) -> dict[str, object]:
    """Start a command's temporary API on `home`, write through it, stop it; what it did."""
    environment = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false"}
    environment.pop("PREFECT_API_URL", None)
    result = subprocess.run(
        [sys.executable, "-c", START_AND_USE], env=environment, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    outcome: dict[str, object] = json.loads(result.stdout.splitlines()[-1])
    return outcome


def test_a_database_is_migrated_once_per_prefect_and_again_when_it_is_replaced(tmp_path: Path, monkeypatch):
    home = tmp_path / "prefect-home"
    monkeypatch.setenv("PREFECT_HOME", str(home))
    database = PrefectDatabase.default()
    assert database is not None and database.path == home / "prefect.db"

    assert start_temporary_api(home) == {"created": 201, "migrate": None}  # a new database: migrated
    assert database.up_to_date()
    assert start_temporary_api(home) == {"created": 201, "migrate": "false"}  # nothing left to migrate

    database.path.unlink()  # the record stays, naming a revision no database is at
    assert not database.up_to_date()
    assert start_temporary_api(home) == {"created": 201, "migrate": None}


def test_a_database_another_prefect_migrated_is_migrated_again(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PREFECT_HOME", str(tmp_path))
    database = PrefectDatabase.default()
    assert database is not None
    with sqlite3.connect(database.path) as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES ('a3b9c7d2e5f1')")
    database.record_migrated()
    assert database.up_to_date()
    recorded = json.loads(database.record.read_text())
    database.record.write_text(json.dumps({**recorded, "prefect": "3.0.0"}))
    assert not database.up_to_date()


@pytest.mark.parametrize("setting", ["PREFECT_API_DATABASE_CONNECTION_URL", "PREFECT_SERVER_DATABASE_MIGRATE_ON_START"])
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
