"""Pruning decides whether to stop training: it is never asked once training is over."""

import numpy as np
import optuna
import pytest
from sklearn.ensemble import RandomForestClassifier
from sklearn.naive_bayes import GaussianNB
from xgboost import XGBClassifier

from mlpipe.tasks.sweep.trial import STAGES, Reporter, fit_reporting

ROUNDS = 6


def _rows(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(300, 4))
    return x, (x[:, 0] + rng.normal(scale=0.5, size=300) > 0).astype(int)


def _accuracy(raw: np.ndarray) -> float:
    _, y = _rows(1)
    labels = raw.argmax(axis=1) if raw.ndim == 2 else (raw > 0.5).astype(int)
    return float((labels == y).mean())


@pytest.mark.parametrize(
    ("estimator", "last_step"),
    [
        (XGBClassifier(n_estimators=ROUNDS, n_jobs=1), ROUNDS),
        (RandomForestClassifier(n_estimators=STAGES, n_jobs=1, random_state=0), STAGES),
        (GaussianNB(), 1),  # fitted in one step
    ],
    ids=["xgboost", "forest", "one-step"],
)
def test_a_pruner_that_would_stop_only_the_last_step_lets_the_trial_complete(estimator, last_step):
    # Every value breaks the threshold, but the warm-up lasts until the last step: only there could it prune.
    pruner = optuna.pruners.ThresholdPruner(upper=-1.0, n_warmup_steps=last_step)
    trial = optuna.create_study(direction="maximize", pruner=pruner).ask()
    reporter = Reporter(trial, deadline=None)
    x_train, y_train = _rows(0)
    x_valid, y_valid = _rows(1)

    fit_reporting(estimator, x_train, y_train, x_valid, y_valid, "accuracy", _accuracy, reporter, every=1)

    assert reporter.steps == last_step
    assert trial.storage.get_trial(trial._trial_id).intermediate_values.keys() == {
        step for step, _ in reporter.history
    }  # the final value still reaches the study, for the pruner's later judgements


def test_a_pruner_stops_a_trial_before_its_last_step():
    pruner = optuna.pruners.ThresholdPruner(upper=-1.0, n_warmup_steps=2)
    trial = optuna.create_study(direction="maximize", pruner=pruner).ask()
    reporter = Reporter(trial, deadline=None)
    x_train, y_train = _rows(0)
    x_valid, y_valid = _rows(1)
    with pytest.raises(optuna.TrialPruned):
        fit_reporting(
            XGBClassifier(n_estimators=ROUNDS, n_jobs=1),
            x_train,
            y_train,
            x_valid,
            y_valid,
            "accuracy",
            _accuracy,
            reporter,
            every=1,
        )
    assert reporter.steps == 2
