"""The events checks and retraining emit, and the model they are about.

A model is an event resource named `mlpipe.model.<name>` with the version as a label, so a
deployment trigger reacts to one model's drift by name, never by a UUID.
"""

from typing import Any

DRIFT_CHECKED = "mlpipe.drift.checked"
DRIFT_DETECTED = "mlpipe.drift.detected"
PERFORMANCE_CHECKED = "mlpipe.performance.checked"
PERFORMANCE_DEGRADED = "mlpipe.performance.degraded"
MODEL_PROMOTED = "mlpipe.model.promoted"
MODEL_REJECTED = "mlpipe.model.rejected"


def model_resource_id(name: str) -> str:
    """The resource id of a registered model: what triggers match on."""
    return f"mlpipe.model.{name}"


def model_resource(name: str, version: str) -> dict[str, str]:
    """A model version as a Prefect event resource."""
    return {
        "prefect.resource.id": model_resource_id(name),
        "prefect.resource.name": name,
        "mlpipe.model.name": name,
        "mlpipe.model.version": version,
    }


def emit(event: str, name: str, version: str, payload: dict[str, Any]) -> None:
    """Emit `event` about a model version (sent to the Prefect API in the background)."""
    from prefect.events import emit_event

    from mlpipe.redaction import redact

    emit_event(event, resource=model_resource(name, version), payload=redact(payload))


def announce(checked: str, alarm: str, raised: bool, name: str, version: str, payload: dict[str, Any]) -> None:
    """Every check emits `checked`; one that found a problem also emits `alarm`, which retraining listens for."""
    emit(checked, name, version, payload)
    if raised:
        emit(alarm, name, version, payload)
