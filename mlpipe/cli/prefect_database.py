"""Whether the temporary Prefect API may skip its database migration: this Prefect already brought it up to date.

Prefect's server runs Alembic's upgrade each time it starts. On a database already at the
newest revision that upgrade changes nothing, but it reads every migration script Prefect ships
to find out: about a second of the temporary API's start, on every command that has no Prefect
server. After a start that migrated, the command records the database's revision and the
Prefect version that migrated it beside the database; the next start skips the migration only
while both still hold. A new Prefect, a deleted or replaced database, a database another
program moved on, or any database setting of the user's own migrates as before.
"""

import contextlib
import json
import os
import sqlite3
import uuid
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path

from mlpipe.runtime import prefect_setting, prefect_settings_named

DATABASE_SETTINGS = ("PREFECT_SERVER_DATABASE_", "PREFECT_API_DATABASE_")
"""The prefixes of Prefect's database settings: a user who set any of them keeps Prefect's own start."""


@dataclass(frozen=True)
class PrefectDatabase:
    """Prefect's default database, the SQLite file under `PREFECT_HOME`, and the record of its last migration."""

    path: Path

    @staticmethod
    def default() -> "PrefectDatabase | None":
        """The database a temporary API uses when the user set none of its settings (else None)."""
        if prefect_settings_named(DATABASE_SETTINGS):
            return None
        return PrefectDatabase(Path(prefect_setting("PREFECT_HOME") or "~/.prefect").expanduser() / "prefect.db")

    @property
    def record(self) -> Path:
        return self.path.with_name(f"{self.path.name}.mlpipe-migrated")

    def up_to_date(self) -> bool:
        """Whether this Prefect migrated the database to the revision it is at now."""
        revision = self.revision()
        try:
            recorded = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return False
        return revision is not None and recorded == {"prefect": version("prefect"), "revision": revision}

    def record_migrated(self) -> None:
        """Record the database's revision as migrated by this Prefect (after a start that migrated it)."""
        revision = self.revision()
        if revision is None:
            return
        temporary = self.record.with_name(f".{self.record.name}.{uuid.uuid4().hex}")
        temporary.write_text(json.dumps({"prefect": version("prefect"), "revision": revision}))
        os.replace(temporary, self.record)

    def revision(self) -> str | None:
        """The Alembic revision the database is at; None when there is no database, or it cannot be read."""
        if not self.path.is_file():
            return None
        try:
            with contextlib.closing(sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=5)) as db:
                rows = db.execute("SELECT version_num FROM alembic_version ORDER BY version_num").fetchall()
        except sqlite3.Error:
            return None
        return ",".join(row[0] for row in rows) or None
