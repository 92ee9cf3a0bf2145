"""The training flow end to end on embedded defaults: registry, caching, gate."""

import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

from mlpipe.blocks import GatePolicy, WorkspaceConfig
from mlpipe.demo_data import credit_default
from mlpipe.errors import ConfigError
from mlpipe.tasks.model.evaluate import PREDICTIONS_ARTIFACT
from mlpipe.tasks.model.explanation import EXPLANATION_ARTIFACT, EXPLANATION_PLOT, Explanation
from mlpipe.tasks.model.fairness import FAIRNESS_ARTIFACT, FairnessReport
from mlpipe.tasks.registry.card import build_card, render_markdown
from mlpipe.tasks.registry.champion import champion_sensitive, run_contract
from tests.pipeline import DATA_TASKS, loans_by_sex, model_versions, run_training

pytestmark = pytest.mark.flow

FEATURE_EXCLUDE = ["application_id"]


def test_first_run_registers_champion_and_identical_rerun_is_cached(workspace: WorkspaceConfig, data_dir: Path):
    data = data_dir / "cache-demo.csv"  # a file no other test has ingested, big enough to time
    credit_default(rows=150_000, seed=5).to_csv(data, index=False)
    params = {"data": str(data), "target": "default", "name": "cache-demo", "exclude": FEATURE_EXCLUDE, "model": {}}
    first = run_training(workspace, **params)
    assert first.error is None, first.error
    assert first.summary.version == "1"
    assert {"champion", "challenger"} <= set(first.summary.aliases)
    assert first.summary.gate.passed
    assert all(first.task_states[t] == "Completed" for t in (*DATA_TASKS, "train", "evaluate"))

    second = run_training(workspace, **params)
    assert second.error is None, second.error
    assert {t: second.task_states[t] for t in (*DATA_TASKS, "train", "evaluate")} == dict.fromkeys(
        (*DATA_TASKS, "train", "evaluate"), "Cached"
    )
    assert second.summary.version == "1"
    assert [v.version for v in model_versions(workspace, "cache-demo")] == [1]
    assert second.seconds < 0.6 * first.seconds, (first.seconds, second.seconds)


def test_changed_hyperparameter_retrains_but_reuses_data_steps(workspace: WorkspaceConfig, demo_csv: Path):
    base = {"data": str(demo_csv), "target": "default", "name": "hparam-demo", "exclude": FEATURE_EXCLUDE}
    assert run_training(workspace, **base).error is None
    changed = run_training(workspace, **base, model={"params": {"n_estimators": 40, "max_depth": 3}})
    assert changed.error is None, changed.error
    assert {t: changed.task_states[t] for t in DATA_TASKS} == dict.fromkeys(DATA_TASKS, "Cached")
    assert changed.task_states["train"] == "Completed"
    assert changed.task_states["register"] == "Completed"
    assert changed.summary.version == "2"


def test_one_changed_byte_invalidates_everything_after_ingest(
    workspace: WorkspaceConfig, data_dir: Path, demo_frame: pd.DataFrame
):
    path = data_dir / "byte.csv"
    demo_frame.to_csv(path, index=False)
    base = {"data": str(path), "target": "default", "name": "byte-demo", "exclude": FEATURE_EXCLUDE}
    before = run_training(workspace, **base)
    assert before.error is None, before.error
    text = path.read_text()
    row_start = text.index("\n") + 1
    path.write_text(text[:row_start] + "9" + text[row_start + 1 :])  # first digit of the first id
    changed = run_training(workspace, **base)
    assert changed.error is None, changed.error
    for name in (*DATA_TASKS, "train", "evaluate"):
        assert changed.task_states[name] == "Completed", name
    assert changed.summary.dataset.content_hash != before.summary.dataset.content_hash


def test_worse_model_becomes_challenger_not_champion(
    workspace: WorkspaceConfig, data_dir: Path, demo_frame: pd.DataFrame
):
    good, shuffled = data_dir / "good.parquet", data_dir / "shuffled.parquet"
    demo_frame.to_parquet(good, index=False)
    noisy = demo_frame.copy()
    noisy["default"] = np.random.default_rng(7).permutation(noisy["default"].to_numpy())
    noisy.to_parquet(shuffled, index=False)
    base = {"target": "default", "name": "gate-demo", "exclude": FEATURE_EXCLUDE}
    champion = run_training(workspace, data=str(good), **base)
    assert champion.error is None and champion.summary.gate.passed

    worse = run_training(workspace, data=str(shuffled), **base)
    assert worse.error is None, worse.error
    assert not worse.summary.gate.passed
    assert worse.summary.gate.champion_version == "1"
    assert worse.summary.gate.champion > worse.summary.gate.candidate
    client = workspace.resolve().mlflow.client()
    assert str(client.get_model_version_by_alias("gate-demo", "champion").version) == "1"
    assert str(client.get_model_version_by_alias("gate-demo", "challenger").version) == "2"


def test_champion_predicts_raw_rows_like_the_evaluation_step(workspace: WorkspaceConfig, demo_csv: Path):
    outcome = run_training(workspace, data=str(demo_csv), target="default", name="pyfunc-demo", exclude=FEATURE_EXCLUDE)
    assert outcome.error is None, outcome.error
    resolved = workspace.resolve().mlflow
    with resolved.session():
        evaluated = pd.read_parquet(
            mlflow.artifacts.download_artifacts(f"runs:/{outcome.summary.run_id}/{PREDICTIONS_ARTIFACT}")
        )
        model = mlflow.pyfunc.load_model("models:/pyfunc-demo@champion")
    test_rows = pd.read_parquet(outcome.summary.splits.test.uri)
    predicted = model.predict(test_rows)  # raw rows: ids, timestamp and label included
    assert len(predicted) == len(evaluated) == len(test_rows)
    np.testing.assert_allclose(predicted["probability_1"], evaluated["probability_1"])
    assert (predicted["prediction"].to_numpy() == evaluated["prediction"].to_numpy()).all()


def test_runs_on_an_existing_scheduler_given_by_address(workspace: WorkspaceConfig, demo_csv: Path):
    from distributed import Client, LocalCluster
    from prefect.settings import PREFECT_API_URL

    from mlpipe.blocks import DaskCluster

    env = {"PREFECT_API_URL": PREFECT_API_URL.value()}  # what an operator sets on remote workers
    with LocalCluster(n_workers=1, threads_per_worker=2, env=env, dashboard_address=":0") as cluster:
        remote = workspace.model_copy(update={"cluster": DaskCluster(address=cluster.scheduler_address)})
        outcome = run_training(
            remote, data=str(demo_csv), target="default", name="remote-demo", exclude=FEATURE_EXCLUDE
        )
        assert outcome.error is None, outcome.error
        with Client(cluster.scheduler_address) as client:
            prefixes = client.run_on_scheduler(lambda dask_scheduler: sorted(dask_scheduler.task_prefixes))
    assert {"ingest", "train", "register"} <= {prefix.split("-")[0] for prefix in prefixes}


def test_regression_with_a_linear_model_is_scored_by_rmse(
    workspace: WorkspaceConfig, data_dir: Path, demo_frame: pd.DataFrame
):
    path = data_dir / "regression.parquet"
    demo_frame.to_parquet(path, index=False)
    outcome = run_training(
        workspace,
        data=str(path),
        target="interest_rate",
        name="rate-demo",
        exclude=[*FEATURE_EXCLUDE, "default"],
        model={"family": "linear"},
    )
    assert outcome.error is None, outcome.error
    assert set(outcome.summary.metrics) == {"rmse", "mae", "r2"}
    assert outcome.summary.metrics["r2"] > 0.3  # the rate follows the credit score, plus noise
    assert outcome.summary.gate.metric == "rmse"
    with workspace.resolve().mlflow.session():
        artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(outcome.summary.run_id, "evaluation")}
    assert "evaluation/residuals.png" in artifacts


def test_run_publishes_metrics_gate_decision_and_mlflow_link(workspace: WorkspaceConfig, demo_csv: Path):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    outcome = run_training(workspace, data=str(demo_csv), target="default", name="artifact-demo")
    assert outcome.error is None, outcome.error
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="artifact-demo")))
    by_key = {artifact.key: artifact for artifact in artifacts}
    assert set(by_key) == {
        "artifact-demo-metrics",
        "artifact-demo-explanation",
        "artifact-demo-gate",
        "artifact-demo-mlflow-run",
        "artifact-demo-model-card",
    }
    assert by_key["artifact-demo-metrics"].type == "table"
    assert "roc_auc" in str(by_key["artifact-demo-metrics"].data)
    assert by_key["artifact-demo-explanation"].type == "table"
    assert "credit_score" in str(by_key["artifact-demo-explanation"].data)
    tracking = workspace.resolve().mlflow
    with tracking.session():
        stored = Explanation.model_validate_json(
            mlflow.artifacts.load_text(f"runs:/{outcome.summary.run_id}/{EXPLANATION_ARTIFACT}")
        )
        plots = {a.path for a in mlflow.MlflowClient().list_artifacts(outcome.summary.run_id, "evaluation")}
        curve = mlflow.MlflowClient().get_metric_history(outcome.summary.run_id, "validation_logloss")
    assert [metric.step for metric in curve] == list(range(len(curve))) and len(curve) > 10  # one per round
    assert stored.method == "tree SHAP" and stored.rows == 128
    # Original names, each once: the one-hot columns of `purpose` and `region` are summed back to them.
    assert sorted(stored.importances) == sorted(run_contract(outcome.summary.run_id, tracking).feature_names)
    assert {"purpose", "region"} <= set(stored.importances)
    assert EXPLANATION_PLOT in plots
    assert "no champion yet" in str(by_key["artifact-demo-gate"].data)
    assert outcome.summary.run_id in str(by_key["artifact-demo-mlflow-run"].data)
    card = str(by_key["artifact-demo-model-card"].data)
    assert card.startswith(f"# Model card: artifact-demo v{outcome.summary.version}") and "## Limitations" in card


FAIRNESS_GATE = GatePolicy(fairness={"metric": "demographic_parity_difference", "max": 0.1})
PARITY_REASON = re.compile(
    r"demographic_parity_difference on 'sex' is (?P<value>\d\.\d{4}) "
    r"\(selection_rate of group 'F' (?P<low>\d\.\d\d) vs 'M' (?P<high>\d\.\d\d)\), above the limit 0\.1"
)


def test_a_model_biased_on_purpose_fails_the_fairness_gate_naming_metric_value_limit_and_group(
    workspace: WorkspaceConfig, data_dir: Path
):
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    path = data_dir / "biased-loans.parquet"
    loans_by_sex(6_000, seed=11, biased=True).to_parquet(path, index=False)
    gated = workspace.model_copy(update={"gate": FAIRNESS_GATE})
    outcome = run_training(gated, data=str(path), target="approved", name="biased-demo", sensitive=["sex"])
    assert outcome.error is None, outcome.error
    summary = outcome.summary
    assert summary.version == "1" and "challenger" in summary.aliases and "champion" not in summary.aliases
    assert not summary.gate.passed
    reason = PARITY_REASON.fullmatch(summary.gate.reason)
    assert reason, summary.gate.reason
    assert float(reason["value"]) > 0.3 and float(reason["low"]) < float(reason["high"])
    assert summary.gate.fairness == {"sex": pytest.approx(float(reason["value"]), abs=1e-4)}
    assert summary.metrics["roc_auc"] > 0.9  # a good model by its score: only the fairness limit stops it

    tracking = workspace.resolve().mlflow
    run = tracking.client().get_run(summary.run_id)
    with tracking.session():
        stored = FairnessReport.model_validate_json(
            mlflow.artifacts.load_text(f"runs:/{summary.run_id}/{FAIRNESS_ARTIFACT}")
        )
        plots = {a.path for a in mlflow.MlflowClient().list_artifacts(summary.run_id, "evaluation")}
        inputs = mlflow.models.get_model_info(f"models:/biased-demo/{summary.version}").signature.inputs.input_names()
    assert stored == summary.fairness and stored.positive_class == "1"
    parity = stored.columns[0].differences["demographic_parity_difference"]
    assert run.data.metrics["fairness_sex_demographic_parity_difference"] == pytest.approx(parity.value)
    assert run.data.metrics["fairness_sex_equalized_odds_difference"] == pytest.approx(
        stored.columns[0].differences["equalized_odds_difference"].value
    )
    assert "evaluation/fairness_sex.png" in plots
    # The model never saw the column: the bias comes through `height`.
    assert "sex" not in run_contract(summary.run_id, tracking).feature_names and "sex" not in inputs
    assert {"height", "skill"} <= set(inputs) and not stored.columns[0].model_input

    card = render_markdown(build_card("biased-demo", summary.version, tracking))
    fairness = card.split("## Fairness\n", 1)[1].split("\n## ", 1)[0]
    shown = dict(re.findall(r"^- (\w+_difference): ([\d.]+) ", fairness, re.MULTILINE))
    assert {name: float(value) for name, value in shown.items()} == {
        name: pytest.approx(disparity.value, rel=1e-5) for name, disparity in stored.columns[0].differences.items()
    }
    for group in stored.columns[0].groups:
        row = re.search(rf"^\| {group.group} \| {group.count:,} \| ([\d.]+) \|", fairness, re.MULTILINE)
        assert row and float(row[1]) == pytest.approx(group.selection_rate, rel=1e-5), group.group
    assert "**sex** (not a model input)" in fairness
    assert "rejected" in card and summary.gate.reason.split(" (")[0] in card

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="biased-demo")))
    by_key = {artifact.key: artifact for artifact in artifacts}
    assert by_key["biased-demo-fairness"].type == "table"
    assert "selection_rate" in str(by_key["biased-demo-fairness"].data)
    assert "demographic_parity_difference" in str(by_key["biased-demo-gate"].data)


def test_the_same_data_with_a_fair_label_passes_the_fairness_gate(workspace: WorkspaceConfig, data_dir: Path):
    path = data_dir / "fair-loans.parquet"
    loans_by_sex(6_000, seed=11, biased=False).to_parquet(path, index=False)
    gated = workspace.model_copy(update={"gate": FAIRNESS_GATE})
    outcome = run_training(gated, data=str(path), target="approved", name="fair-demo", sensitive=["sex"])
    assert outcome.error is None, outcome.error
    assert outcome.summary.gate.passed, outcome.summary.gate.reason
    assert "champion" in outcome.summary.aliases
    assert outcome.summary.gate.fairness["sex"] < 0.1
    # A retraining of the champion measures, and gates, the same groups.
    assert champion_sensitive("fair-demo", workspace.resolve().mlflow) == ["sex"]


def test_a_fairness_limit_without_a_sensitive_column_fails_before_any_step(workspace: WorkspaceConfig, demo_csv: Path):
    gated = workspace.model_copy(update={"gate": FAIRNESS_GATE})
    outcome = run_training(gated, data=str(demo_csv), target="default", name="unmeasured-demo")
    assert isinstance(outcome.error, ConfigError)
    assert "gate.fairness limits demographic_parity_difference" in str(outcome.error)
    assert "--sensitive COLUMN" in str(outcome.error)
    assert not outcome.task_states  # not even ingest ran
