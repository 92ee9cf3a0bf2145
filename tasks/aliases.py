"""Moving the `champion` alias, with a record of every move: who, why, when, and from which version.

Each move is a tag on the version that received the alias (`mlpipe.alias_history.<UTC time>`),
so the history needs no store of its own and survives as long as the registry does.
"""

import datetime as dt
import getpass
import json

from pydantic import BaseModel

from blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from tasks.gate import CHAMPION

HISTORY_PREFIX = "mlpipe.alias_history."


class AliasChange(BaseModel):
    """One move of an alias."""

    alias: str
    version: str
    previous: str | None
    by: str
    reason: str
    at: str


def set_champion(
    name: str, version: str, tracking: MlflowConnection, reason: str, by: str | None = None
) -> AliasChange:
    """Point `champion` at `version` and record the move on that version."""
    client = tracking.client()
    previous = current_champion(name, tracking)
    client.set_registered_model_alias(name, CHAMPION, version)
    now = dt.datetime.now(dt.UTC)
    change = AliasChange(
        alias=CHAMPION,
        version=version,
        previous=previous,
        by=by or getpass.getuser(),
        reason=reason,
        at=now.isoformat(),
    )
    key = f"{HISTORY_PREFIX}{now:%Y%m%dT%H%M%S%f}"
    client.set_model_version_tag(name, version, key, change.model_dump_json(exclude={"version"}))
    return change


def current_champion(name: str, tracking: MlflowConnection) -> str | None:
    aliases = tracking.client().get_registered_model(name).aliases
    return str(aliases[CHAMPION]) if CHAMPION in aliases else None


def alias_history(name: str, tracking: MlflowConnection) -> list[AliasChange]:
    """Every recorded move of `champion` for the model, oldest first."""
    changes = []
    for version in tracking.client().search_model_versions(f"name = '{name}'"):
        for key, value in version.tags.items():
            if key.startswith(HISTORY_PREFIX):
                changes.append(AliasChange(version=str(version.version), **json.loads(value)))
    return sorted(changes, key=lambda change: change.at)


def rollback(name: str, tracking: MlflowConnection, to: str | None, reason: str, by: str | None = None) -> AliasChange:
    """Move `champion` back: to `to`, or to the version it replaced last.

    Raises:
        ConfigError: no champion to roll back, no earlier champion recorded, or an unknown version.
    """
    current = current_champion(name, tracking)
    if current is None:
        raise ConfigError(f"model '{name}' has no champion to roll back")
    if to is None:
        moves = [change for change in alias_history(name, tracking) if change.version == current and change.previous]
        if not moves:
            raise ConfigError(f"model '{name}': no earlier champion is recorded; use --to VERSION")
        to = moves[-1].previous
    assert to is not None
    versions = {str(v.version) for v in tracking.client().search_model_versions(f"name = '{name}'")}
    if to not in versions:
        raise ConfigError(f"model '{name}' has no version {to} (versions: {', '.join(sorted(versions, key=int))})")
    return set_champion(name, to, tracking, reason=f"rollback: {reason}", by=by)
