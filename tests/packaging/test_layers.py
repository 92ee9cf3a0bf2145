"""The import-layer contract in `make lint` fails when a lower layer imports a higher one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import source_tree

pytestmark = pytest.mark.unit
LINT_IMPORTS = str(Path(sys.executable).parent / "lint-imports")


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    """`lint-imports` with the project's contracts on the package assembled in `tree`, as `make lint` runs it."""
    env = {**os.environ, "PYTHONPATH": str(tree)}
    config = str(source_tree.ROOT / "pyproject.toml")
    return subprocess.run(
        [LINT_IMPORTS, "--no-cache", config], cwd=tree, env=env, capture_output=True, text=True, timeout=120
    )


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    source_tree.build(tmp_path)
    return tmp_path


def test_the_code_as_it_is_keeps_every_contract(tree: Path):
    result = lint_imports(tree)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "violation", "contract"),
    [
        ("tasks/datasets.py", "from mlpipe.flows import training", "mlpipe layers"),
        ("blocks/gate.py", "import mlpipe.tasks.metrics", "mlpipe layers"),
        ("tasks/data/split.py", "from mlpipe.tasks.registry import gate", "tasks by concern"),
        ("tasks/monitoring/drift_check.py", "from mlpipe.tasks.scoring import batch", "tasks by concern"),
        ("tasks/contract.py", "from mlpipe.tasks.model import families", "tasks by concern"),
    ],
)
def test_a_lower_layer_importing_a_higher_one_breaks_the_contract(
    tree: Path, module: str, violation: str, contract: str
):
    path = tree / "mlpipe" / module
    path.write_text(path.read_text() + f"\n{violation}  # a deliberate violation\n")
    result = lint_imports(tree)
    assert result.returncode != 0
    broken = [line for line in result.stdout.splitlines() if line.endswith(" BROKEN")]
    assert [line for line in broken if line.startswith(contract)], result.stdout
    importer = "mlpipe." + module.removesuffix(".py").replace("/", ".")
    assert importer in result.stdout  # the report names the module that broke it
