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
        if problem["type"] == "extra_forbidden":
            known = _fields_at(model, problem["loc"][:-1])
            expected = f"; expected one of {known}" if known else ""
            raise ConfigError(f"{source}: unknown field '{field}'{expected}") from None
        message = str(problem["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{source}: field '{field}': {message}") from None


def _fields_at(model: type["BaseModel"], location: tuple[int | str, ...]) -> list[str]:
    """The field names of the model found at `location` inside `model` (empty when it is not one model)."""
    from pydantic import BaseModel

    current: object = model
    for part in location:
        if isinstance(part, int):
            continue
        fields = getattr(current, "model_fields", {})
        if part not in fields:
            return []
        current = _model_in(fields[part].annotation)
    return (
        sorted(getattr(current, "model_fields", {}))
        if isinstance(current, type) and issubclass(current, BaseModel)
        else []
    )


def _model_in(annotation: object) -> object:
    """The pydantic model an annotation holds (`X`, `X | None`, `list[X]`, `dict[str, X]`), else the annotation."""
    from typing import get_args

    from pydantic import BaseModel

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for argument in get_args(annotation):
        found = _model_in(argument)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def load_yaml(path: Path, kind: str) -> object:
    """Parse a YAML (or JSON) file; a missing or malformed file is a ConfigError naming it."""
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{kind} {path} not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{kind} {path} is not valid YAML or JSON: {error}") from None
