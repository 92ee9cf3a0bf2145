"""Where a user looks: links to MLflow runs and the keys of Prefect artifacts."""

import re

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.redaction import redact


def run_link(tracking: MlflowConnection, experiment_id: str, run_id: str) -> str:
    """A browser link to the MLflow run, or the command that opens a UI on a local store."""
    uri = redact(tracking.tracking_uri or "")
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {uri}  (then open run {run_id})"


def artifact_key(model_name: str) -> str:
    """Prefect artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-") or "model"
