"""Whether the temporary Prefect API may skip preparing its database: this Prefect already prepared it.

Prefect's server prepares its database each time it starts: Alembic's upgrade, which reads
every migration script Prefect ships to find there is nothing to do, and block registration,
which imports every Prefect collection installed (prefect-dask, and with it Dask's client) to
find that nothing changed. Together about a second of the temporary API's start, on every
command that has no Prefect server. After a start that prepared the database, the command
records beside it the revision it is at, the Prefect version and the installed collections; the
next start skips both steps only while all of these still hold and the database has its block
types. A new Prefect or collection, a deleted or replaced database, a database another program
moved on: prepared as before, its block types registered whatever Prefect's own memo says. Any
database or block-registration setting of the user's own: Prefect's start as it is.
"""

import contextlib
import json
import os
import sqlite3
import uuid
from dataclasses import dataclass
from importlib.metadata import entry_points, version
from pathlib import Path
from typing import Any

from mlpipe.runtime import prefect_setting, prefect_settings_named

USERS_OWN = (
    "PREFECT_SERVER_DATABASE_",
    "PREFECT_API_DATABASE_",
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START",
    "PREFECT_API_BLOCKS_REGISTER_ON_START",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION",
    "PREFECT_MEMOIZE_BLOCK_AUTO_REGISTRATION",
)
"""Prefixes of the settings that decide how a server prepares its database: a user who set one keeps Prefect's way."""
PREPARED = {
    "PREFECT_SERVER_DATABASE_MIGRATE_ON_START": "false",
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",  # its check imports the collections first
}
"""The server's settings for a database that needs no preparing."""
PREPARING = {"PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false"}
"""The server's settings for a database it prepares: Prefect's memo of the block types it registered is
kept apart from the database, so a new database beside an old memo would otherwise get none."""


@dataclass(frozen=True)
class PrefectDatabase:
    """Prefect's default database, the SQLite file under `PREFECT_HOME`, and the record of its last preparation."""

    path: Path

    @staticmethod
    def default() -> "PrefectDatabase | None":
        """The database a temporary API uses when the user set none of the settings above (else None)."""
        if prefect_settings_named(USERS_OWN):
            return None
        return PrefectDatabase(Path(prefect_setting("PREFECT_HOME") or "~/.prefect").expanduser() / "prefect.db")

    @property
    def record(self) -> Path:
        return self.path.with_name(f"{self.path.name}.mlpipe-prepared")

    def prepared(self) -> bool:
        """Whether this Prefect, with the collections installed now, prepared the database as it is now."""
        try:
            recorded = json.loads(self.record.read_text())
        except (OSError, ValueError):
            return False
        state = self._state()
        return state is not None and recorded == state

    def record_prepared(self) -> None:
        """Record the database as prepared (after a start that prepared it and answered)."""
        state = self._state()
        if state is None:
            return
        temporary = self.record.with_name(f".{self.record.name}.{uuid.uuid4().hex}")
        try:
            temporary.write_text(json.dumps(state))
            os.replace(temporary, self.record)
        except OSError:  # a home this command cannot write to: the next start prepares the database again
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)

    def _state(self) -> dict[str, Any] | None:
        """What a start that prepares the database depends on; None when it has no revision or no block types."""
        if not self.path.is_file():
            return None
        try:
            with contextlib.closing(sqlite3.connect(f"{self.path.as_uri()}?mode=ro", uri=True, timeout=5)) as db:
                revisions = [row[0] for row in db.execute("SELECT version_num FROM alembic_version ORDER BY 1")]
                (block_types,) = db.execute("SELECT count(*) FROM block_type").fetchone()
        except sqlite3.Error:
            return None
        if not revisions or not block_types:
            return None
        collections = sorted(
            f"{point.name}={point.dist.name if point.dist else ''}-{point.dist.version if point.dist else ''}"
            for point in entry_points(group="prefect.collections")
        )
        return {"prefect": version("prefect"), "collections": collections, "revision": ",".join(revisions)}
