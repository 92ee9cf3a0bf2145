"""Who may call the endpoint: API keys from a Prefect `Secret` block or `MLPIPE_API_KEYS`, never a default one.

Keys are compared in constant time with every key (no early exit that a timing could reveal),
remembered by the log redaction, and never logged or echoed.
"""

import hmac
import ipaddress
import os

from mlpipe.blocks.secrets import secret_value
from mlpipe.errors import ConfigError
from mlpipe.infra.serving.settings import API_KEYS
from mlpipe.redaction import install_log_redaction, remember_secret

"""Comma-separated API keys."""
LOOPBACK_NAMES = {"localhost"}


def load_keys(secret_name: str | None, no_auth: bool) -> list[bytes]:
    """The accepted keys: the `Secret` block's (text, comma-separated, or a list), else `MLPIPE_API_KEYS`.

    Raises:
        ConfigError: no key in the source named and `--no-auth` not given.
    """
    if no_auth:
        return []
    if secret_name:
        value = secret_value(secret_name)
        listed = value if isinstance(value, list) else str(value).split(",")
        source = f"Secret block {secret_name!r}"
    else:
        listed = (os.environ.get(API_KEYS) or "").split(",")
        source = f"environment variable {API_KEYS}"
    keys = [str(key).strip() for key in listed if str(key).strip()]
    if not keys:
        raise ConfigError(
            f"no API key: {source} is empty; set {API_KEYS}=KEY[,KEY…] or --api-keys-secret NAME "
            "(or --no-auth on 127.0.0.1 only)"
        )
    install_log_redaction()
    for key in keys:
        remember_secret(key)
    return [key.encode() for key in keys]


def check_exposure(host: str, no_auth: bool) -> None:
    """Refuse `--no-auth` on any address but loopback: an open model endpoint must be a deliberate local choice.

    Raises:
        ConfigError: `--no-auth` with a host other than a loopback address.
    """
    if no_auth and not is_loopback(host):
        raise ConfigError(f"--no-auth is refused on host {host!r}: only on a loopback address such as 127.0.0.1")


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class KeyCheck:
    """Whether an `Authorization` header carries one of the keys (always true when auth is off)."""

    def __init__(self, keys: list[bytes]) -> None:
        self._keys = keys

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def allows(self, authorization: str | None) -> bool:
        if not self._keys:
            return True
        scheme, _, given = (authorization or "").partition(" ")
        token = given.strip().encode()
        matched = False
        for key in self._keys:  # every key compared, whichever matches
            matched |= hmac.compare_digest(token, key)
        return matched and scheme.lower() == "bearer"
