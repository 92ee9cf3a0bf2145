"""What configuration a user writes must look like: no unknown keys, and names that are safe as paths and filters.

A misspelt key that is silently ignored changes behaviour without a word (`gate: {treshold: 0.9}`
would disable the gate), so every model a user fills in forbids unknown keys. Names (of models,
studies, partitions, deployments) become folder names, MLflow filter strings and Prefect
artifact keys, so they are restricted to characters that are safe in all three.
"""

import re
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict

FORBID_UNKNOWN = ConfigDict(extra="forbid")
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
NAME_RULE = "start with a letter or digit and hold only letters, digits, '.', '_' and '-' (at most 128)"


class Strict(BaseModel):
    """A model a user fills in (a config section, a flow's parameters): an unknown key is an error."""

    model_config = FORBID_UNKNOWN


def check_name(value: str) -> str:
    """`value` if it is a safe name; a ValueError saying the rule otherwise."""
    if not NAME.fullmatch(value):
        raise ValueError(f"{value!r} is not a valid name: it must {NAME_RULE}")
    return value


Name = Annotated[str, AfterValidator(check_name)]
"""A model, study, partition or deployment name."""
