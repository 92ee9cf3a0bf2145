"""Where a local workspace lives (`MLPIPE_HOME`, or `./.mlpipe`) and what this machine offers."""

import os
import uuid
from pathlib import Path


def available_cores() -> int:
    """CPU cores this process may use (its affinity where the OS reports one)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def workspace_id() -> str:
    """A random id written once per workspace directory.

    It is part of every cache key (through the resolved Datastore), so a deleted and recreated
    workspace never reuses cached results that point into the old one.
    """
    path = workspace_home() / "workspace-id"
    if not path.exists():
        # Written whole under another name, then linked into place: a link never replaces an
        # existing file, so when two processes create a workspace at once, the first id wins
        # and both read it.
        temporary = path.with_name(f".workspace-id.{uuid.uuid4().hex}")
        temporary.write_text(uuid.uuid4().hex)
        try:
            os.link(temporary, path)
        except FileExistsError:
            pass
        finally:
            temporary.unlink()
    return path.read_text().strip()


def workspace_home() -> Path:
    """The absolute workspace directory, created on first use."""
    home = Path(os.environ.get("MLPIPE_HOME", ".mlpipe")).expanduser().resolve()
    home.mkdir(parents=True, exist_ok=True)
    return home
