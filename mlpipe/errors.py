"""Errors a user can act on: each names the file, column or field and what was expected."""

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # pydantic and yaml load when first used: the command line starts without them
    from pydantic import BaseModel

M = TypeVar("M", bound="BaseModel")


class MlpipeError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class DataError(MlpipeError):
    """Input data cannot be used (missing, unreadable, wrong type, wrong shape)."""


class ValidationFailed(DataError):
    """Data broke its contract; the message lists every failed expectation."""


class ConfigError(MlpipeError):
    """A configuration value or parameter is invalid."""


def validated(model: type[M], data: object, source: str) -> M:
    """`model.model_validate(data)`, with the first problem as a ConfigError naming source and field."""
    from pydantic import ValidationError

    try:
        return model.model_validate(data)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        raise ConfigError(f"{source}: field '{field}': {problem['msg']}") from None


def load_yaml(path: Path, kind: str) -> object:
    """Parse a YAML (or JSON) file; a missing or malformed file is a ConfigError naming it."""
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{kind} {path} not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{kind} {path} is not valid YAML or JSON: {error}") from None
