"""The benchmarks import mlpipe inside their functions (so that timing starts before the imports); nothing else runs
them in `make test`, so a name moved in the package must still be found where they import it."""

import ast
import importlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

BENCHMARKS = sorted((Path(__file__).resolve().parent.parent / "benchmarks").glob("*.py"))


def mlpipe_imports(path: Path) -> list[tuple[str, str]]:
    """Every `from mlpipe… import name` in the file, at any depth."""
    return [
        (node.module, alias.name)
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "mlpipe"
        for alias in node.names
    ]


@pytest.mark.parametrize("path", BENCHMARKS, ids=lambda path: path.name)
def test_every_name_a_benchmark_imports_from_mlpipe_exists(path: Path):
    missing = []
    for module, name in mlpipe_imports(path):
        found = importlib.import_module(module)
        if not hasattr(found, name):
            try:
                importlib.import_module(f"{module}.{name}")
            except ModuleNotFoundError:
                missing.append(f"{module}.{name}")
    assert not missing, f"{path.name} imports names mlpipe no longer has: {missing}"
