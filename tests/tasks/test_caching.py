"""Cache keys follow project code: every `mlpipe` module a task uses, transitively, and nothing else."""

import importlib.util
import os
import sys
import time
import types
from pathlib import Path

import pytest

import mlpipe.tasks.data.ingest
import mlpipe.tasks.model.evaluate
from mlpipe.tasks.caching import ModuleSource, SourceFingerprint, project_modules

pytestmark = pytest.mark.unit


def names(module: types.ModuleType) -> set[str]:
    return {found.__name__ for found in project_modules(module)}


def test_a_task_depends_on_the_project_modules_it_uses_and_on_no_other():
    evaluate = names(mlpipe.tasks.model.evaluate)
    assert {"mlpipe.tasks.model.train", "mlpipe.tasks.model.families", "mlpipe.tasks.metrics"} <= evaluate
    assert "mlpipe.tasks.data.ingest" not in evaluate
    assert all(name == "mlpipe" or name.startswith("mlpipe.") for name in evaluate)
    assert "mlpipe.tasks.model.families" not in names(mlpipe.tasks.data.ingest)


def test_a_projects_own_tasks_module_is_not_project_code(monkeypatch: pytest.MonkeyPatch):
    users = types.ModuleType("tasks")
    users.__file__ = "tasks.py"
    monkeypatch.setitem(sys.modules, "tasks", users)
    step = types.ModuleType("mlpipe.tasks.example")
    step.__file__ = "example.py"
    step.helper = users  # type: ignore[attr-defined]  # a name bound to the user's module
    step.ingest = mlpipe.tasks.data.ingest  # type: ignore[attr-defined]
    found = names(step)
    assert "tasks" not in found
    assert "mlpipe.tasks.data.ingest" in found


STEP_SOURCE = """
from mlpipe.tasks.caching import pipeline_task


def step() -> int:
    return {value}


step_task = pipeline_task(step)
"""


def load_step(path: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    """Import `path` as a project module (under the `mlpipe` name), as a worker imports a task module."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)
    spec.loader.exec_module(module)
    return module


def source_key(module: types.ModuleType) -> str | None:
    context = types.SimpleNamespace(task=module.step_task)
    return ModuleSource().compute_key(context, {}, {})  # type: ignore[arg-type]  # only `task` is read


def test_the_code_hash_is_of_the_code_loaded_not_of_the_file_edited_since(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    path = tmp_path / "step.py"
    path.write_text(STEP_SOURCE.format(value=1))
    loaded = load_step(path, "mlpipe.tasks.edited_step", monkeypatch)
    before = source_key(loaded)

    path.write_text(STEP_SOURCE.format(value=2))  # edited while this process still runs the old code
    assert loaded.step() == 1
    assert source_key(loaded) == before  # its results are the old code's: keyed as the old code

    fresh = load_step(path, "mlpipe.tasks.edited_step", monkeypatch)  # a new worker imports the edit
    assert fresh.step() == 2
    assert source_key(fresh) != before


def test_a_file_rewritten_with_its_old_size_and_mtime_has_another_fingerprint(tmp_path: Path):
    path = tmp_path / "data.csv"
    path.write_text("a,b\n1,2\n")
    fingerprint = SourceFingerprint(parameter="source")

    def key() -> str | None:
        return fingerprint.compute_key(None, {"source": str(path)}, {})  # type: ignore[arg-type]  # unused

    before, stat = key(), path.stat()
    assert key() == before  # an unchanged file keeps its key
    time.sleep(0.05)  # the kernel's clock for file times ticks every few milliseconds
    path.write_text("a,b\n3,4\n")  # same size
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))  # as `cp -p`, `touch -r` or a restore leaves it
    assert path.stat().st_size == stat.st_size and path.stat().st_mtime_ns == stat.st_mtime_ns
    assert key() != before


def test_a_folder_or_glob_source_changes_key_when_a_file_in_it_is_added_or_changed(tmp_path: Path):
    (tmp_path / "parts").mkdir()
    (tmp_path / "parts" / "1.csv").write_text("a,b\n1,2\n")
    fingerprint = SourceFingerprint(parameter="source")

    def key(source: Path | str) -> str | None:
        return fingerprint.compute_key(None, {"source": str(source)}, {})  # type: ignore[arg-type]  # unused

    folder, glob = key(tmp_path / "parts"), key(f"{tmp_path}/parts/*.csv")
    assert key(tmp_path / "parts") == folder and key(f"{tmp_path}/parts/*.csv") == glob
    (tmp_path / "parts" / "2.csv").write_text("a,b\n3,4\n")
    assert key(tmp_path / "parts") != folder and key(f"{tmp_path}/parts/*.csv") != glob
    folder = key(tmp_path / "parts")
    time.sleep(0.05)
    (tmp_path / "parts" / "1.csv").write_text("a,b\n5,6\n")  # changed in place, same size
    assert key(tmp_path / "parts") != folder
    assert key(f"{tmp_path}/parts/*.json") != key(f"{tmp_path}/parts/*.json")  # nothing there: never cached
