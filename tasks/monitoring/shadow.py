"""How a shadowed challenger did on live traffic: agreement with the champion's answers, one rule everywhere.

The endpoint (`mlpipe serve --shadow-share`) counts agreement as it shadows (its `/metrics`) and
captures both answers; the retraining flow reads the captures back to report how the challenger
it replaces did on the traffic it saw.
"""

from typing import Any

import numpy as np
import pandas as pd
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.tasks import artifacts
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.data.files import list_inputs
from mlpipe.tasks.links import artifact_key
from mlpipe.tasks.monitoring.capture import PREFIX, SHADOW_PREFIX, SHADOW_VERSION, capture_location
from mlpipe.tasks.registry.aliases import CHALLENGER, find_alias

REGRESSION_AGREEMENT = 0.05
"""A regression challenger agrees on a row when it is within this share of the champion's prediction."""
PREDICTION = "prediction"


class ShadowSummary(BaseModel):
    """A challenger version's shadowed rows in a capture folder and how many agreed with the answer given."""

    version: str
    rows: int
    agreeing: int

    @property
    def agreement(self) -> float | None:
        return self.agreeing / self.rows if self.rows else None


def agreeing_rows(champion: pd.Series | np.ndarray, challenger: pd.Series | np.ndarray) -> int:
    """Rows where the two predictions agree: the same label, or numbers within `REGRESSION_AGREEMENT`."""
    ours, theirs = np.asarray(champion), np.asarray(challenger)
    if ours.dtype.kind in "fc" and theirs.dtype.kind in "fc":
        close = np.abs(ours - theirs) <= REGRESSION_AGREEMENT * np.maximum(np.abs(ours), 1e-12)
        return int(close.sum())
    return int((ours == theirs).sum())


def shadow_summary(location: str, version: str, storage_options: dict[str, Any] | None = None) -> ShadowSummary:
    """Agreement of challenger `version` over every row it shadowed in the captures at `location`.

    Reads only the three columns it needs from each file; a folder with no capture yet is zero rows.
    """
    import pyarrow.parquet as pq
    from fsspec.core import url_to_fs

    from mlpipe.errors import DataError

    columns = [f"{PREFIX}{PREDICTION}", f"{SHADOW_PREFIX}{PREDICTION}", SHADOW_VERSION]
    rows = agreeing = 0
    try:
        files = list_inputs(location)
    except DataError:  # nothing captured there yet
        return ShadowSummary(version=version, rows=0, agreeing=0)
    for listed in (file for file in files if file.format == "parquet"):
        fs, path = url_to_fs(listed.url, **(storage_options or {}))
        schema = pq.read_schema(path, filesystem=fs)
        if not set(columns) <= set(schema.names):
            continue  # no shadow in this file
        frame = pq.read_table(path, columns=columns, filesystem=fs).to_pandas()
        shadowed = frame[frame[SHADOW_VERSION] == version]
        rows += len(shadowed)
        agreeing += agreeing_rows(shadowed[columns[0]], shadowed[columns[1]])
    return ShadowSummary(version=version, rows=rows, agreeing=agreeing)


def report_challenger_traffic(
    model_name: str, datastore: Datastore, tracking: MlflowConnection
) -> ShadowSummary | None:
    """How the `challenger` a retraining is about to replace did on live traffic, as an artifact of the run.

    None when no version is challenger; a challenger never shadowed reports zero rows (the endpoint
    shadows only with `--shadow-share`).
    """
    challenger = find_alias(model_name, CHALLENGER, tracking)
    if challenger is None:
        return None
    resolved = datastore.resolve()
    summary = shadow_summary(capture_location(resolved, model_name), str(challenger.version), resolved.options())
    agreement = "no shadowed rows" if summary.agreement is None else f"{summary.agreement:.1%} of rows agreed"
    artifacts.table(
        f"{artifact_key(model_name)}-challenger-traffic",
        [{"challenger": f"v{summary.version}", "shadowed rows": summary.rows, "agreeing rows": summary.agreeing}],
        f"{model_name}: challenger v{summary.version} on live traffic ({agreement} with the champion)",
        links="",
    )
    return summary


challenger_traffic_task = pipeline_task(report_challenger_traffic, cache_policy=NO_CACHE)
