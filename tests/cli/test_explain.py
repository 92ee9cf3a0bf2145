"""`mlpipe explain` as a user runs it: per-row contributions that add up to the registered model's margin."""

from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlpipe.blocks import WorkspaceConfig
from tests.pipeline import run_cli, run_training

pytestmark = pytest.mark.e2e

MODEL = "explain-demo"


def test_explain_writes_contributions_that_add_up_to_the_margin_and_names_a_missing_column(
    workspace: WorkspaceConfig, demo_frame: pd.DataFrame, tmp_path: Path
):
    data = tmp_path / "rows.csv"
    demo_frame.to_csv(data, index=False)
    outcome = run_training(workspace, data=str(data), target="default", name=MODEL, exclude=["application_id"])
    assert outcome.error is None, outcome.error
    tracking = workspace.resolve().mlflow
    env = {"MLFLOW_TRACKING_URI": tracking.tracking_uri or ""}
    output = tmp_path / "contributions.parquet"

    args = ["explain", "--model", f"{MODEL}@champion", "--data", str(data), "--rows", "50"]
    written = run_cli(*args, "--output", str(output), cwd=tmp_path, extra_env=env)
    assert written.returncode == 0, written.stderr[-3000:]
    assert "Wrote 50 rows" in written.stdout
    frame = pd.read_parquet(output)
    with tracking.session():
        model = mlflow.pyfunc.load_model(f"models:/{MODEL}@champion")
    features = [name for name in frame.columns if name not in ("bias", "margin")]
    assert {"purpose", "region", "credit_score"} <= set(features) and not any("=" in name for name in features)
    assert "application_id" not in features and "default" not in features
    np.testing.assert_allclose(frame[features].sum(axis=1) + frame["bias"], frame["margin"], rtol=1e-5, atol=1e-4)
    probability = model.predict(demo_frame.head(50))["probability_1"].to_numpy()
    np.testing.assert_allclose(1 / (1 + np.exp(-frame["margin"].to_numpy())), probability, rtol=1e-4, atol=1e-5)

    printed = run_cli(*args, cwd=tmp_path, extra_env=env)
    assert printed.returncode == 0, printed.stderr[-3000:]
    assert "largest contributions to the margin" in printed.stdout and "30 more rows" in printed.stdout

    incomplete = tmp_path / "no-income.csv"
    demo_frame.drop(columns=["income"]).to_csv(incomplete, index=False)
    missing = run_cli("explain", "--model", f"{MODEL}@champion", "--data", str(incomplete), cwd=tmp_path, extra_env=env)
    assert missing.returncode == 1
    assert f"{incomplete}: column 'income' is missing (the model needs it)" in missing.stderr


def test_a_forest_is_refused_by_name_with_the_card_that_ranks_its_columns(
    workspace: WorkspaceConfig, demo_frame: pd.DataFrame, tmp_path: Path
):
    """AutoML often picks a forest, which has no exact per-row contributions: the error says where its
    columns are ranked instead, and that command works."""
    data = tmp_path / "rows.csv"
    demo_frame.to_csv(data, index=False)
    model = {"family": "random_forest", "params": {"n_estimators": 20}}
    outcome = run_training(
        workspace, data=str(data), target="default", name="forest", exclude=["application_id"], model=model
    )
    assert outcome.error is None, outcome.error
    env = {"MLFLOW_TRACKING_URI": workspace.resolve().mlflow.tracking_uri or ""}
    refused = run_cli("explain", "--model", "forest@champion", "--data", str(data), cwd=tmp_path, extra_env=env)
    assert refused.returncode == 1
    assert "RandomForestClassifier has no exact per-row contributions" in refused.stderr
    assert "`mlpipe card forest@champion` ranks its input columns by permutation importance" in refused.stderr
    card = run_cli("card", "forest@champion", cwd=tmp_path, extra_env=env)
    assert card.returncode == 0, card.stderr[-3000:]
    assert "permutation" in card.stdout.split("## Explanation", 1)[1].split("##", 1)[0]
    # A logged model's URI has no card (`mlpipe card` takes registered versions): no hint to a command that fails.
    logged = f"runs:/{outcome.summary.run_id}/model"
    unregistered = run_cli("explain", "--model", logged, "--data", str(data), cwd=tmp_path, extra_env=env)
    assert unregistered.returncode == 1
    assert "RandomForestClassifier has no exact per-row contributions" in unregistered.stderr
    assert "mlpipe card" not in unregistered.stderr
