"""What one `mlpipe serve` runs with, handed to each uvicorn worker process as JSON (never a key)."""

import os

from pydantic import Field

from mlpipe.validation import Strict

API_KEYS = "MLPIPE_API_KEYS"
"""The endpoint's API keys (comma-separated), when they do not come from a Secret block."""
READY_PATH = "/ready"
"""Answers 200 once a version is loaded (readiness); `mlpipe up` and the manifests probe it."""
HEALTH_PATH = "/health"
"""Answers 200 while the process serves (liveness)."""
SETTINGS_VARIABLE = "MLPIPE_SERVE_SETTINGS"
"""How the command hands the settings to uvicorn's worker processes, which build the app themselves."""


class ServeSettings(Strict):
    """The options of `mlpipe serve`; API keys are loaded by each worker from their source, never stored here."""

    model: str
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1)
    config_file: str | None = None
    api_keys_secret: str | None = None
    no_auth: bool = False
    shadow_share: float = Field(default=0.0, ge=0.0, le=1.0)
    poll_seconds: float = Field(default=10.0, gt=0)
    max_body_bytes: int = Field(default=8_000_000, gt=0)
    drain_seconds: int = Field(default=30, ge=0)
    capture_rate: float = Field(default=0.1, ge=0.0, le=1.0)
    """Share of the rows answered that are captured to the datastore for drift checks (0: none)."""
    capture_to: str | None = None
    """Where captures go; default: the datastore's `captures/<model>` (`capture_location`)."""
    shadow_queue: int = Field(default=256, ge=1)
    """Requests waiting for the challenger; more are dropped (counted) so the caller never waits."""

    def to_environment(self) -> dict[str, str]:
        return {SETTINGS_VARIABLE: self.model_dump_json()}

    @classmethod
    def from_environment(cls) -> "ServeSettings":
        return cls.model_validate_json(os.environ[SETTINGS_VARIABLE])
