"""The `mlpipe` package as one folder, assembled from the repository's source folders.

The product's folders (`flows/`, `tasks/`, …) sit at the top of the repository and install
under `mlpipe` through `package-dir` in pyproject.toml. Tools that read packages from a folder
(mypy, import-linter) and tests that run an edited copy of the code need them together as
`mlpipe/…`; this builds that folder from the same `package-dir`, so the mapping has one
definition.

    python -m tests.source_tree DEST                       writes DEST/mlpipe
    TOOL DEST/mlpipe | python -m tests.source_tree DEST --messages
                                                           points TOOL's messages at the real files
"""

import re
import shutil
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "mlpipe"


def package_dirs() -> dict[str, Path]:
    """Import name → source folder, as pyproject.toml installs them."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    return {name: ROOT / folder for name, folder in settings["package-dir"].items()}


def build(destination: Path) -> Path:
    """Copy every mapped folder to `destination/mlpipe/…` (replacing what was there); returns the package folder."""
    target = destination / PACKAGE
    if target.exists():
        shutil.rmtree(target)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name, folder in sorted(package_dirs().items(), key=lambda item: item[0].count(".")):
        shutil.copytree(folder, destination.joinpath(*name.split(".")), ignore=ignore, dirs_exist_ok=True)
    return target


def source_path(copied: str, destination: Path) -> str:
    """The repository path of a file in the copy (for messages that should point at the real file)."""
    relative = Path(copied).resolve().relative_to(destination.resolve())
    for name, folder in sorted(package_dirs().items(), key=lambda item: -item[0].count(".")):
        prefix = Path(*name.split("."))
        if relative.is_relative_to(prefix):
            return str((folder / relative.relative_to(prefix)).relative_to(ROOT))
    return copied


def point_at_sources(line: str, destination: Path) -> str:
    """`DEST/mlpipe/tasks/x.py:3: error …` → `tasks/x.py:3: error …`."""
    match = re.match(rf"^({re.escape(str(destination))}/\S+?\.py)(.*)$", line)
    return source_path(match.group(1), destination) + match.group(2) if match else line


if __name__ == "__main__":
    folder = Path(sys.argv[1])
    if sys.argv[2:] == ["--messages"]:
        for message in sys.stdin:
            sys.stdout.write(point_at_sources(message.rstrip("\n"), folder) + "\n")
    else:
        build(folder)
