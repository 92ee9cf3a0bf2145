"""The local workspace: where it lives and its identity, which every cache key includes."""

import threading
from pathlib import Path

import pytest

from mlpipe.workspace import workspace_home, workspace_id

pytestmark = pytest.mark.unit


def test_processes_creating_a_workspace_at_once_agree_on_its_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "new-workspace"))
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def create() -> None:
        barrier.wait()
        seen.append(workspace_id())

    threads = [threading.Thread(target=create) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1 and seen[0] == workspace_id()
    assert [p.name for p in workspace_home().iterdir()] == ["workspace-id"]  # no temporary file left
