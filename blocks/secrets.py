"""Credentials: read from a Prefect `Secret` block or the environment when a connection opens, never stored in a URI.

A block's URI fields travel as flow parameters (stored by the Prefect API, shown in its UI),
into artifacts, links and logs; a password or token in them would be everywhere. So a URI
field that holds a password is refused, and the password is named instead: a `Secret` block
(loaded on the machine that connects, through the Prefect API) or an environment variable.
"""

import os
from typing import Annotated, Any

from pydantic import AfterValidator

from mlpipe.redaction import install_log_redaction, password_of, redact, remember_secret


def check_no_password(uri: str | None) -> str | None:
    """`uri` if its user-info holds no password (a ValueError that does not repeat it otherwise)."""
    if uri is not None and password_of(uri):
        raise ValueError(
            f"{redact(uri)} holds a password; keep it out of the URI: put it in a Prefect Secret block "
            "named by `secret_name`, or in the environment"
        )
    return uri


UriWithoutPassword = Annotated[str | None, AfterValidator(check_no_password)]
"""A URI field of a block: anything but a password in its user-info."""


def from_environment(variable: str) -> str | None:
    """A URI from the environment, refused (naming the variable) when it carries a password."""
    from mlpipe.errors import ConfigError

    value = os.environ.get(variable) or None
    try:
        return check_no_password(value)
    except ValueError as error:
        raise ConfigError(f"environment variable {variable}: {error}") from None


def secret_value(name: str) -> Any:
    """The value of the Prefect `Secret` block `name` (a JSON object as a dict); masked in this process's output."""
    import json

    from prefect.blocks.system import Secret

    install_log_redaction()
    value: Any = Secret.load(name).get()  # type: ignore[union-attr]  # sync call outside an event loop
    if isinstance(value, str) and value.lstrip().startswith("{"):
        value = json.loads(value)
    for text in value.values() if isinstance(value, dict) else [value]:
        if isinstance(text, str):
            remember_secret(text)
    return value


def password(secret_name: str | None, variable: str) -> str | None:
    """The password from the `Secret` block named, else from environment variable `variable`, else None."""
    if secret_name:
        value = secret_value(secret_name)
        if not isinstance(value, str):
            from mlpipe.errors import ConfigError

            raise ConfigError(
                f"Secret block {secret_name!r}: expected the password as text, got {type(value).__name__}"
            )
        return value
    found = os.environ.get(variable) or None
    if found:
        install_log_redaction()
        remember_secret(found)
    return found
