"""The sweep flow end to end on real Prefect, Dask, optuna storage and MLflow."""

import itertools
import json
from pathlib import Path

import pandas as pd
import pytest
from optuna.trial import TrialState

from mlpipe.blocks import DaskCluster, GatePolicy, WorkspaceConfig
from mlpipe.errors import ConfigError
from mlpipe.tasks.links import artifact_key
from mlpipe.tasks.registry.card import build_card, render_markdown
from mlpipe.tasks.sweep.space import parse_space
from tests.pipeline import max_overlap, model_versions, run_sweep, study_trials

pytestmark = pytest.mark.flow

XGB_SPACE = {
    "xgboost": {
        "n_estimators": 40,
        "max_depth": {"type": "int", "low": 2, "high": 6},
        "learning_rate": {"type": "loguniform", "low": 0.02, "high": 0.3},
    }
}
NO_PRUNING = {"sampler": "random", "pruner": {"kind": "none"}}


@pytest.fixture(scope="module")
def sweep_data(data_dir: Path, demo_frame: pd.DataFrame) -> str:
    path = data_dir / "sweep.parquet"
    demo_frame.to_parquet(path, index=False)
    return str(path)


def leaderboard_artifact(study: str) -> list[dict]:
    """The rows of the sweep's leaderboard table in the Prefect UI."""
    from prefect import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    with get_client(sync_client=True) as client:
        [table] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"{artifact_key(study)}-leaderboard"]))
        )
    return json.loads(table.data) if isinstance(table.data, str) else table.data


def finished(trials: list) -> list:
    return [t for t in trials if t.state == TrialState.COMPLETE]


def test_seeded_sweep_is_reproducible_and_registers_the_best_with_a_link(workspace: WorkspaceConfig, sweep_data: str):
    space = parse_space(XGB_SPACE, "test")
    first = run_sweep(
        workspace, data=sweep_data, name="sweep-repro-a", space=space, max_trials=6, max_concurrent=2, study=NO_PRUNING
    )
    second = run_sweep(
        workspace, data=sweep_data, name="sweep-repro-b", space=space, max_trials=6, max_concurrent=2, study=NO_PRUNING
    )
    assert first.error is None, first.error
    assert second.error is None, second.error
    a, b = first.summary.sweep, second.summary.sweep

    def by_trial(result: object) -> list[tuple[int, dict, float | None]]:
        return sorted((row.trial, row.params, row.value) for row in result.leaderboard)  # type: ignore[attr-defined]

    assert by_trial(a) == by_trial(b)
    assert len(a.leaderboard) == 6
    assert (a.best_trial, a.best_value) == (b.best_trial, b.best_value)
    assert a.best_value == max(row.value for row in a.leaderboard)  # roc_auc: higher is better

    # The winner went through the gate and the registry, linked back to its sweep.
    training = first.summary.training
    assert training.gate.passed and "champion" in training.aliases
    client = workspace.resolve().mlflow.client()
    version = client.get_model_version("sweep-repro-a", training.version)
    assert version.tags["mlpipe.sweep_run_id"] == first.summary.parent_run_id
    assert version.tags["mlpipe.sweep_trial"] == str(a.best_trial)
    run = client.get_run(training.run_id)
    assert run.data.tags["mlflow.parentRunId"] == first.summary.parent_run_id
    best_params = next(row.params for row in a.leaderboard if row.trial == a.best_trial)
    assert int(run.data.params["max_depth"]) == best_params["max_depth"]
    assert run.data.metrics["train_rows"] > 0.8 * 3_000  # retrained on train + validation (85%)
    # Its card counts the dataset's rows once and says what its training split holds.
    card = build_card("sweep-repro-a", training.version, workspace.resolve().mlflow)
    splits = training.splits
    assert card.data.rows == training.dataset.rows < sum(card.data.split_rows.values())
    assert card.data.split_rows == {name: getattr(splits, name).rows for name in ("train", "validation", "test")}
    assert f"| train rows (train + validation) | {splits.train.rows:,} |" in render_markdown(card)

    # One nested MLflow run per trial under the sweep's parent run, with its state.
    children = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`mlpipe.study` = '{a.study}' and tags.`mlpipe.trial_number` != ''",
    )
    assert {c.data.tags["mlflow.parentRunId"] for c in children} == {first.summary.parent_run_id}
    assert sorted(int(c.data.tags["mlpipe.trial_number"]) for c in children) == list(range(6))
    assert {c.data.tags["mlpipe.trial_state"] for c in children} == {"complete"}
    artifacts = {f.path for f in client.list_artifacts(first.summary.parent_run_id, "sweep")}
    assert {"sweep/optimization_history.png", "sweep/param_importances.png", "sweep/space.json"} <= artifacts


def test_grid_search_visits_every_point_exactly_once(workspace: WorkspaceConfig, sweep_data: str):
    space = parse_space(
        {
            "xgboost": {
                "n_estimators": 10,
                "max_depth": {"type": "int", "low": 2, "high": 4},
                "learning_rate": {"type": "choice", "values": [0.1, 0.3]},
            }
        },
        "test",
    )
    outcome = run_sweep(
        workspace,
        data=sweep_data,
        name="sweep-grid",
        space=space,
        max_trials=50,
        study={"sampler": "grid", "pruner": {"kind": "none"}},
    )
    assert outcome.error is None, outcome.error
    visited = [(row.params["max_depth"], row.params["learning_rate"]) for row in outcome.summary.sweep.leaderboard]
    assert sorted(visited) == sorted(itertools.product([2, 3, 4], [0.1, 0.3]))


def test_concurrency_reaches_but_never_exceeds_max_concurrent(workspace: WorkspaceConfig, sweep_data: str):
    space = parse_space({"xgboost": {"n_estimators": 150, "max_depth": {"type": "int", "low": 4, "high": 8}}}, "t")
    four_threads = workspace.model_copy(update={"cluster": DaskCluster(n_workers=1, threads_per_worker=4)})
    outcome = run_sweep(
        four_threads,
        data=sweep_data,
        name="sweep-concurrency",
        space=space,
        max_trials=9,
        max_concurrent=3,
        study=NO_PRUNING,
    )
    assert outcome.error is None, outcome.error
    trials = study_trials(workspace, outcome.summary.sweep.study)
    intervals = [(t.user_attrs["started"], t.user_attrs["finished"]) for t in trials]
    assert len(intervals) == 9
    assert max_overlap(intervals) == 3
    timing = outcome.summary.sweep.timing
    assert timing.trial_seconds == pytest.approx(sum(end - start for start, end in intervals), rel=1e-6)
    assert 1.0 < timing.parallelism <= 3.0  # reported to the user as trials running at once


def test_median_pruner_stops_bad_trials_mid_training(workspace: WorkspaceConfig, sweep_data: str):
    # Learning rates near zero leave the log-loss where it started: a clearly bad region.
    space = parse_space(
        {"xgboost": {"n_estimators": 80, "learning_rate": {"type": "loguniform", "low": 1e-4, "high": 0.3}}}, "t"
    )
    study = {
        "sampler": "random",
        "metric": "log_loss",
        "pruner": {"kind": "median", "startup_trials": 3, "warmup_steps": 5},
    }
    outcome = run_sweep(
        workspace,
        data=sweep_data,
        name="sweep-pruning",
        space=space,
        max_trials=14,
        max_concurrent=2,
        study=study,
        report_every=1,  # judged after every boosting round
    )
    assert outcome.error is None, outcome.error
    rows = outcome.summary.sweep.leaderboard
    pruned = [row for row in rows if row.state == "pruned"]
    complete = [row for row in rows if row.state == "complete"]
    assert pruned, [(r.params, r.value) for r in rows]
    assert all(5 <= row.steps < 80 for row in pruned)  # stopped mid-training, after the warm-up
    assert outcome.summary.sweep.total_steps < 14 * 80
    assert max(r.params["learning_rate"] for r in pruned) < max(r.params["learning_rate"] for r in complete)
    client = workspace.resolve().mlflow.client()
    for row in pruned:
        run = client.get_run(row.mlflow_run_id)
        assert run.data.tags["mlpipe.trial_state"] == "pruned"
        assert run.info.status == "KILLED"
        assert len(client.get_metric_history(run.info.run_id, "validation_log_loss")) == row.steps


def test_failed_trials_are_recorded_and_the_sweep_goes_on(workspace: WorkspaceConfig, sweep_data: str):
    space = parse_space(
        {"xgboost": {"n_estimators": 10, "max_depth": {"type": "choice", "values": [3, -5]}}}, "t"
    )  # xgboost refuses a negative depth only when it trains
    outcome = run_sweep(
        workspace,
        data=sweep_data,
        name="sweep-failure",
        space=space,
        max_trials=4,
        study={"sampler": "grid", "pruner": {"kind": "none"}},
    )
    assert outcome.error is None, outcome.error
    states = {row.params["max_depth"]: row.state for row in outcome.summary.sweep.leaderboard}
    assert states == {3: "complete", -5: "failed"}
    failed_run = next(r for r in outcome.summary.sweep.leaderboard if r.state == "failed").mlflow_run_id
    run = workspace.resolve().mlflow.client().get_run(failed_run)
    assert run.info.status == "FAILED" and "max_depth" in run.data.tags["mlpipe.error"]


def test_timed_out_trials_fail_and_max_failed_stops_the_sweep_registering_nothing(
    workspace: WorkspaceConfig, sweep_data: str
):
    space = parse_space({"xgboost": {"n_estimators": 5000, "max_depth": {"type": "int", "low": 6, "high": 8}}}, "t")
    outcome = run_sweep(
        workspace,
        data=sweep_data,
        name="sweep-timeout",
        space=space,
        max_trials=10,
        max_failed=2,
        trial_timeout=0.3,
        max_concurrent=1,
        study=NO_PRUNING,
    )
    assert isinstance(outcome.error, Exception)
    assert "2 trials failed" in str(outcome.error) and "time limit" in str(outcome.error)
    assert model_versions(workspace, "sweep-timeout") == []


def test_invalid_space_fails_before_any_trial_naming_the_parameter(workspace: WorkspaceConfig, sweep_data: str):
    space = parse_space({"linear": {"alpha": {"type": "loguniform", "low": 0.01, "high": 1}}}, "t")
    outcome = run_sweep(workspace, data=sweep_data, name="sweep-invalid", space=space, max_trials=3)
    assert isinstance(outcome.error, ConfigError)
    assert "'linear.alpha'" in str(outcome.error) and "LogisticRegression" in str(outcome.error)
    import optuna

    names = optuna.get_all_study_names(workspace.resolve().studies.open())
    assert not [name for name in names if name.startswith("sweep-invalid")]


def test_cross_validation_scores_trials_by_folds(workspace: WorkspaceConfig, sweep_data: str):
    space = parse_space({"random_forest": {"n_estimators": 20, "max_depth": {"type": "int", "low": 3, "high": 8}}}, "t")
    outcome = run_sweep(
        workspace,
        data=sweep_data,
        name="sweep-cv",
        space=space,
        max_trials=2,
        study={"sampler": "random", "pruner": {"kind": "none"}, "cv": 3},
    )
    assert outcome.error is None, outcome.error
    rows = outcome.summary.sweep.leaderboard
    assert [row.steps for row in rows] == [3, 3]  # one report per fold
    run = workspace.resolve().mlflow.client().get_run(rows[0].mlflow_run_id)
    assert 0.0 <= run.data.metrics["final_roc_auc_std"] < 0.1
    assert run.data.metrics["final_roc_auc"] == pytest.approx(rows[0].value)


def test_automl_searches_several_families_and_stops_at_the_exit_score(workspace: WorkspaceConfig, sweep_data: str):
    outcome = run_sweep(
        workspace,
        data=sweep_data,
        name="sweep-automl",
        space="auto",
        max_trials=8,
        max_concurrent=1,
        exit_score=0.99,
        study={"sampler": "random", "pruner": {"kind": "none"}},
    )
    assert outcome.error is None, outcome.error
    assert len({row.family for row in outcome.summary.sweep.leaderboard}) >= 3
    # The UI's leaderboard names each trial's parameters as its family does: the family has its own column.
    shown = leaderboard_artifact(outcome.summary.sweep.study)
    assert {row["family"] for row in shown} == {row.family for row in outcome.summary.sweep.leaderboard}
    assert all(row["params"] and "family=" not in row["params"] for row in shown), shown
    assert not any(f"{row['family']}." in row["params"] for row in shown), shown
    early = run_sweep(
        workspace,
        data=sweep_data,
        name="sweep-exit",
        space="auto",
        max_trials=8,
        max_concurrent=1,
        exit_score=0.5,
        study={"sampler": "random", "pruner": {"kind": "none"}},
    )
    assert early.error is None, early.error
    assert len(early.summary.sweep.leaderboard) == 1  # the first trial already beat 0.5


def test_gate_still_decides_for_a_sweep_winner(workspace: WorkspaceConfig, sweep_data: str):
    strict = workspace.model_copy(update={"gate": GatePolicy(threshold=0.999)})
    space = parse_space({"linear": {"C": {"type": "loguniform", "low": 0.01, "high": 10}}}, "t")
    outcome = run_sweep(strict, data=sweep_data, name="sweep-gated", space=space, max_trials=2, study=NO_PRUNING)
    assert outcome.error is None, outcome.error
    assert not outcome.summary.training.gate.passed
    assert outcome.summary.training.aliases == ["challenger"]
