"""The sweep's pieces on their own: choosing the best trial, search spaces, resuming a study."""

import re
import warnings
from pathlib import Path

import optuna
import pytest
from optuna.distributions import FloatDistribution
from optuna.trial import TrialState, create_trial

from mlpipe.blocks import StudyStorage
from mlpipe.errors import ConfigError
from mlpipe.tasks.sweep.space import auto_space, load_space, parse_space
from mlpipe.tasks.sweep.study import (
    INTERRUPTED,
    StudySpec,
    best_trial,
    counted,
    fail_broken,
    failed,
    open_study,
    reached,
    requeue_interrupted,
)

pytestmark = pytest.mark.unit

X = {"x": FloatDistribution(0.0, 1.0)}


def trial(number: int, value: float | None, state: TrialState = TrialState.COMPLETE) -> optuna.trial.FrozenTrial:
    made = create_trial(state=state, value=value, params={"x": 0.5}, distributions=X, intermediate_values={1: 0.99})
    made.number = number
    return made


def test_best_trial_follows_the_goal():
    trials = [trial(0, 0.70), trial(1, 0.90), trial(2, 0.80)]
    assert best_trial(trials, "maximize").number == 1
    assert best_trial(trials, "minimize").number == 0


def test_best_trial_tie_goes_to_the_earliest():
    trials = [trial(3, 0.9), trial(1, 0.9), trial(2, 0.9)]
    assert best_trial(trials, "maximize").number == 1
    assert best_trial(trials, "minimize").number == 1


def test_pruned_and_failed_trials_never_win():
    # A pruned trial's last report (0.99 here) is not a final score, however good it looks.
    trials = [
        trial(0, None, TrialState.PRUNED),
        trial(1, None, TrialState.FAIL),
        trial(2, 0.6),
    ]
    assert best_trial(trials, "maximize").number == 2
    assert best_trial(trials[:2], "maximize") is None


def test_exit_score_is_reached_in_the_goal_direction():
    assert reached(0.91, 0.9, "maximize") and not reached(0.89, 0.9, "maximize")
    assert reached(0.2, 0.25, "minimize") and not reached(0.3, 0.25, "minimize")
    assert not reached(None, 0.9, "maximize") and not reached(0.9, None, "maximize")


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({"xgboost": {"max_depth": {"type": "int", "low": 8, "high": 2}}}, "'xgboost.max_depth': low 8 is greater"),
        ({"xgboost": {"eta": {"type": "normal", "low": 0, "high": 1}}}, "'xgboost.eta': unknown distribution 'normal'"),
        ({"xgboost": {"booster": {"type": "choice", "values": []}}}, "'xgboost.booster': a choice needs at least one"),
        ({"xgboost": {"eta": {"type": "loguniform", "low": 0, "high": 1}}}, "'xgboost.eta': a log scale needs low > 0"),
        ({"xgboost": {"eta": {"type": "uniform", "low": 0}}}, "'xgboost.eta': uniform needs `low` and `high`"),
        ({"xgboost": {"depth": [1, 2]}}, "'xgboost.depth': a list is not a value"),
        ({"svm": {"C": 1.0}}, "unknown model family 'svm'"),
    ],
)
def test_invalid_spaces_name_the_parameter(space: dict, message: str):
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_space(space, "space.yaml")


def test_parameters_are_checked_against_the_family_for_the_task():
    with pytest.raises(ConfigError, match=r"'xgboost\.max_deph': xgboost .* has no such parameter"):
        parse_space({"xgboost": {"max_deph": 3}}, "t").check("classification")
    with pytest.raises(ConfigError, match=r"'random_forest\.min_samples_leaf': value 0 is not accepted"):
        parse_space({"random_forest": {"min_samples_leaf": {"type": "int", "low": 0, "high": 5}}}, "t").check(
            "regression"
        )
    for task in ("classification", "regression"):
        auto_space(task).check(task)  # the AutoML space itself is valid for both


def test_space_file_round_trip_and_grid(tmp_path: Path):
    path = tmp_path / "space.yaml"
    path.write_text(
        "random_forest:\n  n_estimators: 50\n  max_depth: {type: int, low: 2, high: 10, step: 4}\n"
        "  max_features: {type: uniform, low: 0.2, high: 0.6, step: 0.2}\n"
    )
    space = load_space(path)
    assert space.grid() == {"max_depth": [2, 6, 10], "max_features": [0.2, 0.4, 0.6]}
    assert space.grid_size() == 9
    study = optuna.create_study()
    spec = space.suggest(study.ask(), seed=3)
    assert spec.family == "random_forest" and spec.params["n_estimators"] == 50 and spec.seed == 3
    with pytest.raises(ConfigError, match="'x': grid search needs finite values"):
        parse_space({"xgboost": {"x": {"type": "loguniform", "low": 0.1, "high": 1}}}, "t").grid()
    with pytest.raises(ConfigError, match="grid search takes a space with one model family"):
        auto_space("classification").grid()


def test_several_families_make_a_conditional_space():
    space = parse_space({"xgboost": {"max_depth": {"type": "int", "low": 2, "high": 4}}, "linear": {"C": 1.0}}, "t")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(10):
        asked = study.ask()
        spec = space.suggest(asked, seed=0)
        assert space.spec_from_params(asked.params, seed=0) == spec
        if spec.family == "linear":
            assert asked.params == {"family": "linear"} and spec.params == {"C": 1.0}
        else:
            assert set(asked.params) == {"family", "xgboost.max_depth"}


def test_the_kth_trial_draws_the_same_values_in_any_process():
    spec, space = (
        StudySpec(sampler="random", seed=7),
        parse_space({"xgboost": {"eta": {"type": "uniform", "low": 0, "high": 1}}}, "t"),
    )

    def draw(number: int) -> float:
        study = optuna.create_study(sampler=spec.sampler_for(space, 1, number))
        return study.ask().suggest_float("eta", 0, 1)

    assert draw(5) == draw(5)
    assert draw(5) != draw(6)


def test_the_tpe_sampler_warns_nothing_about_the_experimental_options_the_sweep_chooses():
    """Multivariate, grouped TPE with constant liar is the sweep's choice, not the user's: optuna's
    ExperimentalWarning about it was printed on every trial a sweep asked for."""
    space = auto_space("classification")
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        sampler = StudySpec(sampler="tpe", seed=7).sampler_for(space, 2, 3)
    assert isinstance(sampler, optuna.samplers.TPESampler)
    assert [str(warning.message) for warning in shown] == []


def test_resuming_requeues_interrupted_trials_and_rejects_other_inputs(tmp_path: Path):
    storage = StudyStorage(url=str(tmp_path / "journal.log"))
    spec = StudySpec(goal="maximize", metric="roc_auc")
    study = open_study("resumable", storage, spec, fingerprint="inputs-1")
    done = study.ask()
    done.suggest_float("x", 0, 1)
    study.tell(done, 0.8)
    dead = study.ask()  # its process was killed: the trial stays RUNNING
    x = dead.suggest_float("x", 0, 1)

    again = open_study("resumable", storage, spec, fingerprint="inputs-1")
    requeued = requeue_interrupted(again)
    assert [t.number for t in requeued] == [dead.number]
    trials = again.get_trials()
    assert trials[dead.number].state == TrialState.FAIL and trials[dead.number].user_attrs[INTERRUPTED]
    assert [t.number for t in counted(trials)] == [done.number]  # the interrupted one uses no budget
    retry = again.ask()
    assert retry.suggest_float("x", 0, 1) == x and retry.user_attrs["mlpipe.retry_of"] == dead.number

    with pytest.raises(ConfigError, match="study 'resumable' holds trials of another dataset"):
        open_study("resumable", storage, spec, fingerprint="inputs-2")


def test_study_spec_checks_the_metric_against_the_task():
    assert StudySpec().resolved("regression").goal == "minimize"
    assert StudySpec(metric="f1").resolved("classification").goal == "maximize"
    with pytest.raises(ConfigError, match="sweep metric 'rmse' is not a classification metric"):
        StudySpec(metric="rmse").resolved("classification")


@pytest.mark.parametrize("kind", ["median", "halving"])
def test_with_cross_validation_pruners_judge_by_folds(kind: str):
    """Steps are folds (1..K): the pruners' ten-step defaults would never prune a 3-fold trial."""
    spec = StudySpec(cv=3, pruner={"kind": kind, "startup_trials": 2}).resolved("classification")
    study = optuna.create_study(direction="maximize", pruner=spec.pruner.build())
    for _ in range(4):
        good = study.ask()
        for fold in (1, 2, 3):
            good.report(0.9, fold)
            assert not good.should_prune()  # as a trial's reporter asks after each step
        study.tell(good, 0.9)
    poor = study.ask()
    poor.report(0.5, 1)
    poor.report(0.5, 2)
    assert poor.should_prune()
    assert StudySpec(cv=3, pruner={"warmup_steps": 4}).resolved("classification").pruner.warmup_steps == 4


def test_successive_halving_first_judges_at_a_tenth_of_the_rounds():
    xgboost = parse_space({"xgboost": {"n_estimators": 300, "max_depth": {"type": "int", "low": 2, "high": 8}}}, "t")
    assert xgboost.fewest_rounds() == 300
    assert auto_space("classification").fewest_rounds() == 200  # forests and histogram boosting; linear has none
    assert parse_space({"linear": {"C": 1.0}}, "t").fewest_rounds() is None
    halving = StudySpec(pruner={"kind": "halving"}).pruner
    assert halving.for_rounds(300).min_resource == 30
    assert StudySpec(pruner={"kind": "halving", "min_resource": 5}).pruner.for_rounds(300).min_resource == 5
    assert StudySpec(pruner={"kind": "median"}).pruner.for_rounds(300).min_resource is None


def test_a_trial_whose_task_broke_is_failed_with_its_error_and_counts_against_max_failed():
    study = optuna.create_study()
    broken, finished = study.ask(X), study.ask(X)
    study.tell(finished, 0.5)
    fail_broken(study, broken.number, ConnectionError("worker lost"))
    fail_broken(study, finished.number, ConnectionError("late"))  # a trial that ended is left as it ended
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE]
    assert trials[0].user_attrs["error"] == "ConnectionError: worker lost" and "error" not in trials[1].user_attrs
    assert failed(trials) == [trials[0]]
