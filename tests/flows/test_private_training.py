"""A differentially private model through the training flow: its epsilon and bounds on the version, scoring raw rows."""

import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlpipe.blocks import WorkspaceConfig
from mlpipe.demo_data import HOME, PURPOSES, REGIONS
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.model.explanation import EXPLANATION_ARTIFACT
from mlpipe.tasks.model.privacy import PRIVACY_ARTIFACT
from mlpipe.tasks.registry.card import build_card, render_markdown
from tests.pipeline import run_training, wait_for

pytestmark = pytest.mark.flow

DECLARED = {
    "age": (18, 100),
    "employment_years": (0, 60),
    "credit_score": (300, 850),
    "loan_amount": (0, 200_000),
    "interest_rate": (0, 1),
    "debt_to_income": (0, 3),
    "open_accounts": (0, 100),
    "delinquencies_2y": (0, 50),
    "credit_utilization": (0, 2),
}
"""The demo's domain bounds, as a person would declare them; `income` is left to what the data showed."""
CATEGORIES = {"loan_term": ["36 months", "60 months"], "purpose": PURPOSES, "region": REGIONS, "home_ownership": HOME}


def contract_file(frame: pd.DataFrame, path: Path) -> Path:
    """The inferred contract with declared bounds and category sets for every column but `income`."""
    contract = infer_contract(frame, "default", exclude=["application_id"])
    columns = []
    for column in contract.columns:
        if column.name in DECLARED:
            low, high = DECLARED[column.name]
            column = column.model_copy(update={"minimum": low, "maximum": high, "observed": None})
        elif column.name in CATEGORIES:
            column = column.model_copy(update={"allowed_values": CATEGORIES[column.name], "observed": None})
        columns.append(column)
    path.write_text(contract.model_copy(update={"columns": columns}).to_json())
    return path


def test_private_model_records_its_epsilon_and_scores_raw_rows(
    workspace: WorkspaceConfig, data_dir: Path, demo_frame: pd.DataFrame
):
    data = data_dir / "private.parquet"
    demo_frame.to_parquet(data, index=False)
    outcome = run_training(
        workspace,
        data=str(data),
        target="default",
        name="private-demo",
        exclude=["application_id"],
        contract_file=str(contract_file(demo_frame, data_dir / "private-contract.json")),
        model={"family": "dp_logistic_regression", "params": {"epsilon": 0.5}},
    )
    assert outcome.error is None, outcome.error
    summary = outcome.summary
    assert summary.version == "1" and "champion" in summary.aliases

    tracking = workspace.resolve().mlflow
    client = tracking.client()
    version = client.get_model_version("private-demo", summary.version)
    assert version.tags["mlpipe.privacy.epsilon"] == "0.5"
    assert version.tags["mlpipe.privacy.bounds"] == "data: income"
    run = client.get_run(summary.run_id)
    assert run.data.params["epsilon"] == "0.5"
    assert run.data.tags["mlpipe.privacy.bounds"] == "data: income"
    with tracking.session():
        record = json.loads(mlflow.artifacts.load_text(f"runs:/{summary.run_id}/{PRIVACY_ARTIFACT}"))
        explanation = json.loads(mlflow.artifacts.load_text(f"runs:/{summary.run_id}/{EXPLANATION_ARTIFACT}"))
        model = mlflow.pyfunc.load_model("models:/private-demo/1")
    assert record["epsilon"] == 0.5 and record["delta"] == 0.0
    assert record["library"].startswith("diffprivlib ")
    assert record["mechanism"].startswith("diffprivlib LogisticRegression: objective perturbation")
    assert record["bounds_from_data"] == ["income"]
    assert set(record["bounds_from_contract"]) == {*DECLARED, *CATEGORIES, "has_cosigner", "default"}
    assert len(record["warnings"]) == 1 and "['income']" in record["warnings"][0]
    assert explanation["method"] == "linear"
    card = render_markdown(build_card("private-demo", summary.version, tracking))
    shown = dict(re.findall(r"^\| (.+?) \| (.+?) \|$", card.split("## Privacy\n", 1)[1].split("\n## ")[0], re.M))
    assert float(shown["epsilon"]) == record["epsilon"] and float(shown["delta"]) == record["delta"]
    assert shown["bounds from the data"] == "income"
    assert float(shown["rows clipped to L2 norm"]) == pytest.approx(record["data_norm"], rel=1e-5)
    assert record["warnings"][0] in card.split("## Limitations", 1)[1]
    wait_for(
        lambda: any("['income']" in line for line in privacy_warnings()), 30, "the privacy warning in the run's log"
    )

    rows = pd.read_parquet(summary.splits.test.uri).head(5)  # raw rows: id, timestamp and label included
    edge = rows.iloc[[0, 0, 0]].copy()
    edge["age"] = [500, 100, 18]  # 500 lies outside the declared [18, 100]: clipped to 100
    edge["income"] = [np.nan, np.nan, np.nan]
    predicted = model.predict(pd.concat([rows, edge], ignore_index=True))
    assert len(predicted) == 8 and predicted["probability_1"].between(0, 1).all()
    assert predicted["probability_1"].iloc[5] == pytest.approx(predicted["probability_1"].iloc[6])
    assert predicted["probability_1"].iloc[5] != pytest.approx(predicted["probability_1"].iloc[7])


def privacy_warnings() -> list[str]:
    """The warnings logged on runs about differential privacy (Prefect's text search fails on SQLite)."""
    from prefect import get_client
    from prefect.client.schemas.filters import LogFilter, LogFilterLevel

    with get_client(sync_client=True) as client:
        logs = client.read_logs(log_filter=LogFilter(level=LogFilterLevel(ge_=30)), limit=200)
    return [log.message for log in logs if "differential privacy" in log.message]
