"""Cache keys follow project code: every `mlpipe` module a task uses, transitively, and nothing else."""

import sys
import types

import pytest

import mlpipe.tasks.data.ingest
import mlpipe.tasks.model.evaluate
from mlpipe.tasks.caching import project_modules

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
