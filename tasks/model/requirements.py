"""The packages a logged model needs, pinned to the versions this process loaded, and MLflow's check of them.

MLflow compares a model's requirements with the installed packages when it saves the model and
again when it loads it, and warns about a mismatch. To do so it first maps every module of every
installed distribution to its package (`packages_distributions`: every distribution's file list
is read, a third of a second in this project's environment, once per process, in every command
that trains or scores). A requirement that pins exactly the version installed here cannot be a
mismatch, and the requirements mlpipe writes are all of that kind: a list made only of such pins
is passed without the scan. Any other list (a different version, a range, a package not
installed) gets MLflow's check and warning as before.
"""

import functools
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version

RUNTIME_PACKAGES = ("mlpipe", "mlflow", "scikit-learn", "xgboost", "pandas", "pyarrow", "numpy")
MLFLOW_MODULES_CHECKING = ("mlflow.utils.environment", "mlflow.pyfunc")
"""Where MLflow calls its requirement check: saving a model (pip requirements, conda env) and loading one."""


@functools.cache
def pinned(package: str) -> str:
    """`package==version`, the version read once per process: the modules in memory are the ones a model
    is pickled with and loaded by, whatever an upgrade since put on disk (each look-up costs milliseconds)."""
    return f"{package}=={version(package)}"


def runtime_requirements(*extra: str) -> list[str]:
    """The requirements of a model this process logs: mlpipe's runtime packages and `extra` ones, pinned."""
    return [pinned(package) for package in (*RUNTIME_PACKAGES, *extra)]


def check_requirements_quickly() -> None:
    """Make MLflow's requirement check pass lists of exact pins of the installed versions at once (idempotent).

    An MLflow that moved the check keeps checking every list (this module's tests then fail, naming it).
    """
    import importlib

    for name in MLFLOW_MODULES_CHECKING:
        module = importlib.import_module(name)
        check = getattr(module, "warn_dependency_requirement_mismatches", None)
        if check is not None and not hasattr(check, "__wrapped__"):
            module.warn_dependency_requirement_mismatches = _unless_installed_here(check)  # type: ignore[attr-defined]


def installed_here(requirements: list[str]) -> bool:
    """Whether every requirement is `package==version` with the version this process loaded."""
    for requirement in requirements:
        package, separator, _ = requirement.partition("==")
        try:
            if not separator or pinned(package.strip()) != requirement.strip():
                return False
        except (PackageNotFoundError, ValueError):
            return False
    return True


def _unless_installed_here(check: Callable[[list[str]], None]) -> Callable[[list[str]], None]:
    @functools.wraps(check)
    def checked(requirements: list[str]) -> None:
        if not installed_here(requirements):
            check(requirements)

    return checked
