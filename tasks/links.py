"""Where a user looks: links to MLflow runs and model versions, and the keys of Prefect artifacts."""

import re
from collections.abc import Sequence
from urllib.parse import quote

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.redaction import redact


def run_link(tracking: MlflowConnection, experiment_id: str, run_id: str) -> str:
    """A browser link to the MLflow run, or the command that opens a UI on a local store."""
    uri = redact(tracking.tracking_uri or "")
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"mlflow ui --backend-store-uri {uri}  (then open run {run_id})"


def mlflow_links(
    tracking: MlflowConnection,
    *,
    run_id: str | None = None,
    experiment_id: str | None = None,
    models: Sequence[tuple[str, str]] = (),
    run_label: str = "MLflow run",
) -> str:
    """Markdown naming the MLflow run and model versions (`(name, version)`) behind a Prefect artifact.

    On an MLflow server they are links into its UI (the run's page opens from its id alone); on a
    local store, which no browser can open, the ids and the command that serves a UI on it.
    """
    parts: list[str] = []
    local: set[str] = set()
    if run_id:
        base = _ui_base(tracking.tracking_uri)
        page = f"#/experiments/{experiment_id}/runs/{run_id}" if experiment_id else f"#/runs/{run_id}"
        parts.append(f"[{run_label}]({base}/{page})" if base else f"{run_label} `{run_id}`")
        if base is None:
            local.add(redact(tracking.tracking_uri or ""))
    for name, version in models:
        base = _ui_base(tracking.registry_uri or tracking.tracking_uri)
        page = f"#/models/{quote(name, safe='')}/versions/{version}"
        parts.append(f"[model {name} v{version}]({base}/{page})" if base else f"model `{name}` v{version}")
        if base is None:
            local.add(redact(tracking.registry_uri or tracking.tracking_uri or ""))
    parts += [f"open with `mlflow ui --backend-store-uri {uri}`" for uri in sorted(local)]
    return " · ".join(parts)


def _ui_base(uri: str | None) -> str | None:
    """The MLflow UI's address when the store is a server (`None` for a file or database)."""
    shown = redact(uri or "")
    return shown.rstrip("/") if shown.startswith(("http://", "https://")) else None


def artifact_key(model_name: str) -> str:
    """Prefect artifact keys allow only lowercase letters, digits and dashes."""
    return re.sub(r"[^a-z0-9-]+", "-", model_name.lower()).strip("-") or "model"
