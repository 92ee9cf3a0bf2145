"""The endpoint answers what `mlflow.pyfunc` answers for the same rows, in every accepted body shape."""

import json

import httpx
import mlflow
import numpy as np
import pandas as pd
import pytest

from mlpipe.blocks import MlflowConnection
from tests.infra.serving.conftest import auth, running, settings
from tests.infra.serving.models import feature_rows

pytestmark = pytest.mark.e2e


def pyfunc_predictions(name: str, tracking: MlflowConnection, rows: pd.DataFrame) -> pd.DataFrame:
    with tracking.session():
        return mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(rows)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_predictions_equal_mlflow_pyfunc(task: str, tracking: MlflowConnection, request: pytest.FixtureRequest):
    name = request.getfixturevalue("classifier" if task == "classification" else "regressor")
    rows = feature_rows(task, 200, seed=7)
    rows.loc[3, "employment_years"] = np.nan  # a null where the contract allows one
    records = json.loads(rows.to_json(orient="records"))
    expected = pyfunc_predictions(name, tracking, rows)
    with running(settings(f"{name}@champion"), tracking) as (base, _):
        single = [httpx.post(f"{base}/predict", json=[record], headers=auth()) for record in records[:20]]
        batch = httpx.post(f"{base}/predict", json={"dataframe_records": records}, headers=auth())
    assert all(answer.status_code == 200 for answer in single), single[0].text
    assert batch.status_code == 200, batch.text
    assert batch.json()["version"] == batch.headers["X-Model-Version"] == "1"
    got = pd.DataFrame(batch.json()["predictions"])
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_dtype=False, rtol=1e-6)
    one_by_one = pd.DataFrame([answer.json()["predictions"][0] for answer in single])
    pd.testing.assert_frame_equal(one_by_one, expected.head(20), check_dtype=False, rtol=1e-6)


def test_every_mlflow_body_shape_gives_the_same_answer(classifier: str, tracking: MlflowConnection):
    rows = feature_rows("classification", 5, seed=3)
    records = json.loads(rows.to_json(orient="records"))
    split = json.loads(rows.to_json(orient="split", index=False))
    columns = {name: [record[name] for record in records] for name in records[0]}
    bodies = [records, {"dataframe_records": records}, {"inputs": records}, {"inputs": columns}]
    bodies.append({"dataframe_split": split})
    with running(settings(f"{classifier}@champion"), tracking) as (base, _):
        answers = [httpx.post(f"{base}/predict", json=body, headers=auth()) for body in bodies]
        metadata = httpx.get(f"{base}/metadata", headers=auth()).json()
    assert [answer.status_code for answer in answers] == [200] * len(bodies), [a.text for a in answers]
    assert all(answer.json() == answers[0].json() for answer in answers)
    assert metadata["version"] == "1" and metadata["contract"]["target"] == "default"
    assert [column["name"] for column in json.loads(metadata["signature"]["inputs"])] == list(rows.columns)
