"""The registry's words (`champion`, `challenger`), the one champion look-up, and every move of `champion`.

Each move is recorded as a tag on the version that received the alias
(`mlpipe.alias_history.<UTC time>`: who, why, when, from which version), so the history needs
no store of its own and survives as long as the registry does.
"""

import datetime as dt
import getpass
import json
from typing import TYPE_CHECKING

from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from mlpipe.tasks.registry.lock import aliases_lock

if TYPE_CHECKING:
    from mlflow.entities.model_registry import ModelVersion

CHAMPION = "champion"
"""The version that serves: moved only by the gate or a rollback."""
CHALLENGER = "challenger"
"""The newest registered version, whether or not the gate passed it."""
HISTORY_PREFIX = "mlpipe.alias_history."
ROLLBACK_REASON = "rollback: "
"""How the history records a move made by `rollback`: a decision of a person that the gate respects."""


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
    """Point `champion` at `version`, whichever version holds it now (a person's decision), and record the move."""
    with aliases_lock(name, tracking):
        return _move_champion(name, version, tracking, reason, by)


def set_challenger(name: str, version: str, tracking: MlflowConnection) -> None:
    """Point `challenger` at `version`, under the model's alias lock.

    MLflow writes an alias by reading it and then inserting or updating it, so two registrations
    of one model at once collide on the alias's unique key unless they take turns.
    """
    with aliases_lock(name, tracking):
        tracking.client().set_registered_model_alias(name, CHALLENGER, version)


def compare_and_set_champion(
    name: str, version: str, expected: str | None, tracking: MlflowConnection, reason: str, by: str | None = None
) -> AliasChange | None:
    """Point `champion` at `version` only while it is still `expected` (the version the gate compared with).

    Returns None, moving nothing, when another writer moved the champion since: the caller judges
    the candidate again against the new champion. Holding the champion already is success: the
    retry of a promotion that moved the alias completes its record. A version judged against itself
    (a re-run of the champion's training) that holds it with its move recorded has nothing to write,
    so it takes no lock.
    """
    judged_against_itself = expected == version and champion_version(name, tracking) == version
    if judged_against_itself and (recorded := _recorded_move(name, version, tracking)):
        return recorded
    with aliases_lock(name, tracking):
        if champion_version(name, tracking) not in (expected, version):
            return None
        return _move_champion(name, version, tracking, reason, by)


def _move_champion(name: str, version: str, tracking: MlflowConnection, reason: str, by: str | None) -> AliasChange:
    """Move the alias and record the move once, under the champion lock.

    The record is written after the alias moves, so an attempt that fails between the two leaves
    the alias on `version` with its move unrecorded: a retry finds the newest record on another
    version and records the move from that one, the version the alias left.
    """
    client = tracking.client()
    previous = champion_version(name, tracking)
    if previous == version:
        history = alias_history(name, tracking)
        if recorded := _recorded_move(name, version, tracking, history):
            return recorded
        previous = history[-1].version if history else None
    else:
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


def _recorded_move(
    name: str, version: str, tracking: MlflowConnection, history: list[AliasChange] | None = None
) -> AliasChange | None:
    """The latest recorded move of `champion` if it gave the alias to `version` (`history`: read already)."""
    history = alias_history(name, tracking) if history is None else history
    return history[-1] if history and history[-1].version == version else None


def find_champion(model_name: str, tracking: MlflowConnection) -> "ModelVersion | None":
    """The version holding the champion alias, or None when there is none yet (or no such model)."""
    return find_alias(model_name, CHAMPION, tracking)


def find_alias(model_name: str, alias: str, tracking: MlflowConnection) -> "ModelVersion | None":
    """The version holding `alias`, or None when no version holds it (or there is no such model)."""
    from mlflow.exceptions import MlflowException

    try:
        return tracking.client().get_model_version_by_alias(model_name, alias)
    except MlflowException as error:
        if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


def champion_version(model_name: str, tracking: MlflowConnection) -> str | None:
    """The champion's version number, or None when there is none."""
    champion = find_champion(model_name, tracking)
    return str(champion.version) if champion is not None else None


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
    current = champion_version(name, tracking)
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
    return set_champion(name, to, tracking, reason=f"{ROLLBACK_REASON}{reason}", by=by)


def rolled_back_from(name: str, version: str, tracking: MlflowConnection) -> AliasChange | None:
    """The latest rollback that took `champion` away from `version`, if one ever did."""
    undone = [
        c for c in alias_history(name, tracking) if c.previous == version and c.reason.startswith(ROLLBACK_REASON)
    ]
    return undone[-1] if undone else None


def find_version(model_name: str, run_id: str, tracking: MlflowConnection) -> str | None:
    """The version already registered for this training run, if any."""
    from mlflow.exceptions import MlflowException

    try:
        found = tracking.client().search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    except MlflowException as error:
        if error.error_code == "RESOURCE_DOES_NOT_EXIST":
            return None
        raise
    return str(min(int(v.version) for v in found)) if found else None
