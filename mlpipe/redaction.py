"""One rule for hiding credentials wherever a URI is shown: logs, CLI output, artifacts, tags, event payloads.

A URI's user-info password (`postgresql://mlpipe:s3cret@db/mlflow`) and its query string
(`?sv=…&sig=…`, a presigned URL's token) are replaced by `***`; the scheme, user, host and path
stay, so a message still says where it looked. Secret values mlpipe loaded from a Prefect
`Secret` block are also replaced wherever they appear, in a URI or not.
"""

import re
import threading
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:  # logging loads when redaction is installed: `mlpipe --help` starts without it
    import logging

MASK = "***"
URI = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>`]*")
_MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words
_known: set[str] = set()
_install_lock = threading.Lock()

T = TypeVar("T")


def redact(value: T) -> T:
    """`value` with every URI password, URI query string and known secret masked; containers are walked.

    Strings, and the strings inside dicts, lists and tuples (event payloads, parameters), are
    redacted; anything else is returned as it is.
    """
    if isinstance(value, str):
        return _redact_text(value)  # type: ignore[return-value]  # str in, str out
    if isinstance(value, dict):
        return {key: redact(item) for key, item in value.items()}  # type: ignore[return-value]
    if isinstance(value, list | tuple):
        return type(value)(redact(item) for item in value)
    return value


def remember_secret(secret: str) -> None:
    """Mask `secret` from now on wherever this process redacts (a value loaded from a Secret block)."""
    if len(secret) >= _MIN_SECRET_LENGTH:
        _known.add(secret)


def password_of(uri: str) -> str | None:
    """The password in `uri`'s user-info, if it holds one."""
    userinfo, at, _ = _authority(uri).rpartition("@")
    return (userinfo.partition(":")[2] or None) if at else None


def user_of(uri: str) -> str | None:
    """The user name in `uri`'s user-info, if it names one."""
    userinfo, at, _ = _authority(uri).rpartition("@")
    return (userinfo.partition(":")[0] or None) if at else None


def with_password(uri: str, username: str | None, password: str) -> str:
    """`uri` with `username` (else the one it names) and `password` in its user-info, for connecting only."""
    from urllib.parse import quote

    scheme, _, rest = uri.partition("://")
    authority = _authority(uri)
    userinfo, at, host = authority.rpartition("@")
    user = username or (userinfo.partition(":")[0] if at else "")
    credentials = f"{quote(user, safe='')}:{quote(password, safe='')}@"
    return f"{scheme}://{credentials}{host}{rest[len(authority) :]}"


def install_log_redaction() -> None:
    """Redact every log record this process makes from now on (idempotent).

    A record factory rather than a handler filter: it covers every logger and every handler,
    including Prefect's handler that ships logs to its API and handlers added later.
    """
    import logging

    with _install_lock:
        factory = logging.getLogRecordFactory()
        if getattr(factory, "redacting", False):
            return

        def redacting_factory(*args: object, **kwargs: object) -> "logging.LogRecord":
            record = factory(*args, **kwargs)
            try:
                message = record.getMessage()
            except (TypeError, ValueError):  # a malformed record: logging reports it when it is formatted
                return record
            record.msg, record.args = redact(message), ()
            if record.exc_info and not record.exc_text:
                record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            return record

        redacting_factory.redacting = True  # type: ignore[attr-defined]
        logging.setLogRecordFactory(redacting_factory)


def _redact_text(text: str) -> str:
    if "://" in text:
        text = URI.sub(lambda match: _redact_uri(match.group(0)), text)
    for secret in _known:
        text = text.replace(secret, MASK)
    return text


def _redact_uri(uri: str) -> str:
    scheme, _, rest = uri.partition("://")
    authority = _authority(uri)
    userinfo, at, host = authority.rpartition("@")
    if at and ":" in userinfo:
        authority = f"{userinfo.partition(':')[0]}:{MASK}@{host}"
    tail = rest[len(_authority(uri)) :]
    path, question, after = tail.partition("?")
    if question:
        query, hash_, fragment = after.partition("#")
        masked = "&".join(f"{part.partition('=')[0]}={MASK}" if "=" in part else MASK for part in query.split("&"))
        tail = f"{path}?{masked}{hash_}{fragment}"
    return f"{scheme}://{authority}{tail}"


def _authority(uri: str) -> str:
    """The part between `scheme://` and the first `/`, `?` or `#` (user-info and host)."""
    rest = uri.partition("://")[2]
    return re.split(r"[/?#]", rest, maxsplit=1)[0]
