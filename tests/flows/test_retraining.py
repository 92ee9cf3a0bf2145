"""Retraining: a challenger judged against the champion on the same recent holdout, promoted only if better."""

from pathlib import Path

import pandas as pd
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from mlpipe.blocks import GatePolicy, WorkspaceConfig
from mlpipe.demo_data import credit_default
from mlpipe.flows.retraining import RetrainingParams, retraining
from mlpipe.tasks.datasets import read_snapshot
from mlpipe.tasks.events import MODEL_PROMOTED, MODEL_REJECTED
from mlpipe.tasks.links import artifact_key
from mlpipe.tasks.monitoring.capture import CaptureWriter, capture_location
from mlpipe.tasks.monitoring.shadow import ShadowSummary
from mlpipe.tasks.registry.aliases import alias_history, champion_version
from mlpipe.tasks.registry.card import build_card
from tests.pipeline import loans_by_sex, model_events, run_training

pytestmark = pytest.mark.flow

MODEL = "retrain-demo"


def shadowed_by_endpoint(workspace: WorkspaceConfig, challenger: str, rows: int, agreeing: int) -> None:
    """Captures as `mlpipe serve --shadow-share` writes them: `challenger` agreed with the champion on `agreeing`."""
    answers = pd.DataFrame({"prediction": [1] * rows})
    shadow = pd.DataFrame({"prediction": [1] * agreeing + [0] * (rows - agreeing)})
    resolved = workspace.resolve()
    writer = CaptureWriter(capture_location(resolved.datastore, MODEL), sample_rate=1.0)
    writer.record(MODEL, "1", pd.DataFrame({"income": range(rows)}), answers, shadow, shadow_version=challenger)
    writer.close(timeout=30)


@pytest.fixture(scope="module")
def gated(workspace: WorkspaceConfig) -> WorkspaceConfig:
    """A gate with a floor: a model no better than chance is never promoted."""
    return workspace.model_copy(update={"gate": GatePolicy(threshold=0.6)})


def test_challenger_on_drifted_data_is_promoted_and_one_on_shuffled_labels_rejected(
    gated: WorkspaceConfig, tmp_path: Path
):
    original, drifted = tmp_path / "original.parquet", tmp_path / "drifted.parquet"
    credit_default(rows=4_000, seed=80).to_parquet(original, index=False)
    credit_default(rows=4_000, seed=81, drift=1.0).to_parquet(drifted, index=False)
    first = run_training(gated, data=str(original), target="default", name=MODEL, exclude=["application_id"])
    assert first.error is None and "champion" in first.summary.aliases
    common = {"target": "default", "name": MODEL, "exclude": ["application_id"]}

    better = retraining(
        RetrainingParams(data=str(drifted), history=str(original), reason="drift detected", **common), gated
    )
    gate = better.training.gate
    assert better.promoted and better.previous_champion == first.summary.version
    assert gate.champion_version == first.summary.version and gate.candidate > gate.champion  # same recent holdout
    assert champion_version(MODEL, gated.resolve().mlflow) == better.training.version
    assert model_events(MODEL, MODEL_PROMOTED, better.training.version)

    shuffled = credit_default(rows=4_000, seed=82, drift=1.0)
    shuffled["default"] = shuffled["default"].sample(frac=1.0, random_state=0).to_numpy()
    shuffled.to_parquet(tmp_path / "shuffled.parquet", index=False)
    assert better.replaced_challenger == ShadowSummary(version=first.summary.version, rows=0, agreeing=0)
    shadowed_by_endpoint(gated, better.training.version, rows=10, agreeing=7)
    worse = retraining(RetrainingParams(data=str(tmp_path / "shuffled.parquet"), reason="bad batch", **common), gated)
    assert not worse.promoted
    assert worse.replaced_challenger == ShadowSummary(version=better.training.version, rows=10, agreeing=7)
    tracking = gated.resolve().mlflow
    assert champion_version(MODEL, tracking) == better.training.version  # unchanged
    assert model_events(MODEL, MODEL_REJECTED, worse.training.version)
    tags = tracking.client().get_model_version(MODEL, better.training.version).tags
    assert any(k.startswith("mlpipe.retraining.") and "rejected" in v for k, v in tags.items())
    assert [change.version for change in alias_history(MODEL, tracking)] == [
        first.summary.version,
        better.training.version,
    ]
    with get_client(sync_client=True) as client:  # the decision in the Prefect UI, newest first
        decisions = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[artifact_key(f"{MODEL}-retraining")])),
            sort=ArtifactSort.CREATED_DESC,
        )
    assert f"v{worse.training.version} rejected against v{better.training.version}" in decisions[0].data
    assert f"v{better.training.version} promoted against v{first.summary.version}" in decisions[1].data


def test_history_rows_that_are_in_the_recent_holdout_are_removed_and_counted(
    workspace: WorkspaceConfig, tmp_path: Path
):
    """A history file that already holds the recent window must not teach the challenger its own exam."""
    model = "retrain-overlap"
    original = credit_default(rows=2_000, seed=83)
    recent = credit_default(rows=2_000, seed=84, drift=1.0)
    original.to_parquet(tmp_path / "original.parquet", index=False)
    recent.to_parquet(tmp_path / "recent.parquet", index=False)
    pd.concat([original, recent]).to_parquet(tmp_path / "everything.parquet", index=False)  # history incl. recent
    common = {"target": "default", "name": model, "exclude": ["application_id"]}
    first = run_training(workspace, data=str(tmp_path / "original.parquet"), **common)
    assert first.error is None, first.error

    summary = retraining(
        RetrainingParams(data=str(tmp_path / "recent.parquet"), history=str(tmp_path / "everything.parquet"), **common),
        workspace,
    )
    store = workspace.resolve().datastore
    splits = summary.training.splits
    holdout = set(read_snapshot(splits.test, store)["application_id"])
    trained_on = set(read_snapshot(splits.train, store)["application_id"])
    assert holdout and not holdout & trained_on
    assert summary.history_rows_removed == len(holdout)
    tags = workspace.resolve().mlflow.client().get_run(summary.training.run_id).data.tags
    assert tags["mlpipe.retraining_history_removed"] == str(len(holdout))


def test_a_retraining_measures_and_gates_the_champions_sensitive_columns_and_keeps_its_intended_use(
    workspace: WorkspaceConfig, tmp_path: Path
):
    fair, biased = tmp_path / "fair.parquet", tmp_path / "biased.parquet"
    loans_by_sex(4_000, seed=21, biased=False).to_parquet(fair, index=False)
    loans_by_sex(4_000, seed=22, biased=True).to_parquet(biased, index=False)
    limit = GatePolicy(fairness={"metric": "demographic_parity_difference", "max": 0.1})
    gated = workspace.model_copy(update={"gate": limit})
    purpose = "Pre-screen loan applications for a loan officer"
    first = run_training(
        gated, data=str(fair), target="approved", name="fair-retrain", sensitive=["sex"], description=purpose
    )
    assert first.error is None and "champion" in first.summary.aliases, first.error

    # No --sensitive: the champion's columns are measured, so the biased challenger cannot slip through.
    retrained = retraining(RetrainingParams(data=str(biased), target="approved", name="fair-retrain"), gated)
    challenger = retrained.training
    assert challenger.fairness is not None and [c.column for c in challenger.fairness.columns] == ["sex"]
    assert not retrained.promoted and "demographic_parity_difference on 'sex'" in challenger.gate.reason
    tracking = gated.resolve().mlflow
    assert champion_version("fair-retrain", tracking) == first.summary.version
    card = build_card("fair-retrain", challenger.version, tracking)
    assert card.intended_use == purpose and card.gate == "rejected"
