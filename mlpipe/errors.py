"""Errors a user can act on: each names the file, column or field and what was expected."""


class MlpipeError(Exception):
    """Base class: the CLI prints these as one line and exits non-zero."""


class DataError(MlpipeError):
    """Input data cannot be used (missing, unreadable, wrong type, wrong shape)."""


class ValidationFailed(DataError):
    """Data broke its contract; the message lists every failed expectation."""


class ConfigError(MlpipeError):
    """A configuration value or parameter is invalid."""
