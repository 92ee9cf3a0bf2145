"""A model pinned to the installed versions saves and loads without MLflow's scan of every distribution;
any other requirement is still checked, and a mismatch still named."""

import logging
from collections.abc import Iterator
from pathlib import Path

import mlflow
import pytest
from mlflow.utils import requirements_utils

from mlpipe.tasks.model.requirements import check_requirements_quickly, installed_here, runtime_requirements

pytestmark = pytest.mark.unit


class Echo(mlflow.pyfunc.PythonModel):
    def predict(self, context: object, model_input: list[int]) -> list[int]:
        return model_input


@pytest.fixture
def unscanned(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str]]:
    """MLflow's module-to-package map not built yet in this process, and the warnings its check logs."""
    monkeypatch.setattr(requirements_utils, "_MODULES_TO_PACKAGES", None)
    warnings: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: warnings.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger(requirements_utils.__name__)
    logger.addHandler(handler)
    check_requirements_quickly()
    yield warnings
    logger.removeHandler(handler)


def save_and_load(path: Path, requirements: list[str]) -> None:
    mlflow.pyfunc.save_model(path, python_model=Echo(), pip_requirements=requirements)
    assert mlflow.pyfunc.load_model(str(path)).predict([1, 2]) == [1, 2]


def test_a_model_pinned_to_the_installed_versions_saves_and_loads_without_the_scan(
    tmp_path: Path, unscanned: list[str]
):
    save_and_load(tmp_path / "model", runtime_requirements("diffprivlib"))
    assert requirements_utils._MODULES_TO_PACKAGES is None
    assert unscanned == []


def test_another_version_is_still_checked_and_named_on_save_and_on_load(tmp_path: Path, unscanned: list[str]):
    save_and_load(tmp_path / "model", [*runtime_requirements(), "pyyaml==0.0.1"])
    assert requirements_utils._MODULES_TO_PACKAGES is not None
    named = [message for message in unscanned if "pyyaml==0.0.1" in message]
    assert len(named) == 2, unscanned  # saving, then loading


@pytest.mark.parametrize(
    "requirement",
    ["scikit-learn", "scikit-learn>=1", "no-such-package==1.0", "scikit-learn==0.0.1", "-r requirements.txt", ""],
)
def test_only_an_exact_pin_of_the_installed_version_counts_as_installed(requirement: str):
    assert installed_here(runtime_requirements())
    assert not installed_here([*runtime_requirements(), requirement])
