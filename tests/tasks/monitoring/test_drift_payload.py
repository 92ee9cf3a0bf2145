"""A drift event stays under Prefect's size limit however many current files there are (captures hold thousands)."""

import json

import pytest

from mlpipe.tasks.monitoring.drift import DatasetDrift, FeatureDrift
from mlpipe.tasks.monitoring.drift_check import DriftSummary
from mlpipe.tasks.monitoring.report import EVENT_FILES, drift_payload
from mlpipe.tasks.registry.model_ref import ResolvedModel

pytestmark = pytest.mark.unit


def test_an_event_names_the_first_files_and_counts_them_all():
    files = [f"s3://lake/captures/credit/date=2026-12-0{d % 7 + 1}/model_version=7/part-{i:032x}.parquet" for i, d in
             enumerate(range(40_000))]  # fmt: skip
    prediction = FeatureDrift(
        feature="prediction score", kind="numeric", test="wasserstein", statistic=0.01, threshold=0.1,
        drifted=False, reference_rows=10, current_rows=10,
    )  # fmt: skip
    summary = DriftSummary(
        model=ResolvedModel(reference="credit@champion", uri="models:/credit/7", name="credit", version="7",
                            run_id=None, inputs=[]),
        reference="ref.parquet", current=files, reference_rows=10, current_rows=10,
        data=DatasetDrift(features=[], drift_share=0.0, weighted_share=0.0, weighting="equal", drifted=False,
                          rules=[], drifted_features=[], critical_drifted=[]),
        prediction=prediction, quality=[], drifted=False, mlflow_run_id="r", report="r",
    )  # fmt: skip
    payload = drift_payload(summary)
    assert payload["current"] == files[:EVENT_FILES] and payload["current_files"] == 40_000
    assert len(json.dumps(payload)) < 100_000  # all 40,000 names would be ≈ 4 MB, over Prefect's 1.5 MB
