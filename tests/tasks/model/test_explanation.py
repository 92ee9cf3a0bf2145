"""Explanations: the feature that drives the label ranks first, and each row's contributions add up to its margin."""

import numpy as np
import pandas as pd
import pytest
from sklearn.pipeline import Pipeline

from mlpipe.errors import ConfigError
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.model.explanation import BIAS, MARGIN, contributions, explain, explanation_plot
from mlpipe.tasks.model.families import Family, ModelSpec, build_estimator
from mlpipe.tasks.model.importance import permutation_importance_of
from mlpipe.tasks.model.preprocessing import build_preprocessor
from mlpipe.tasks.model.pyfunc import TabularModel
from mlpipe.tasks.model.train import encode_target

pytestmark = pytest.mark.unit


def driven_rows(rows: int, task: str, seed: int = 3) -> pd.DataFrame:
    """`driver` decides the label; `shop` (40 categories, one-hot) and `noise` do not."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "driver": rng.normal(0, 1, rows),
            "shop": rng.choice([f"s{i}" for i in range(40)], rows),
            "noise": rng.normal(0, 1, rows),
        }
    )
    signal = 3 * frame["driver"] + rng.normal(0, 0.3, rows)
    frame["label"] = signal if task == "regression" else np.where(signal > 0, "yes", "no")
    return frame


def fitted(rows: pd.DataFrame, family: Family, task: str) -> tuple[TabularModel, DataContract]:
    contract = infer_contract(rows, "label", task=task)  # type: ignore[arg-type]
    y, classes = encode_target(rows["label"], contract, "rows", every_class=True)
    estimator = build_estimator(ModelSpec(family=family, params=_small(family)), contract.task, n_jobs=1)
    pipeline = Pipeline([("preprocess", build_preprocessor(contract, family)), ("model", estimator)]).fit(rows, y)
    return TabularModel(pipeline, contract.task, classes), contract


def _small(family: Family) -> dict[str, int]:
    return {"n_estimators": 40} if family in ("xgboost", "random_forest") else {}


def own_margin(model: TabularModel, rows: pd.DataFrame) -> np.ndarray:
    """The margin as the estimator computes it, apart from `contributions`: log-odds, or the prediction."""
    matrix = model.pipeline[0].transform(rows)
    estimator = model.pipeline[-1]
    if hasattr(estimator, "get_booster"):
        return np.asarray(estimator.predict(matrix, output_margin=True))
    if model.task == "regression":
        return np.asarray(estimator.predict(matrix))
    return np.asarray(estimator.decision_function(matrix))


@pytest.mark.parametrize(
    ("family", "task"),
    [("xgboost", "classification"), ("xgboost", "regression"), ("linear", "classification"), ("linear", "regression")],
)
def test_contributions_and_bias_add_up_to_the_models_margin(family: Family, task: str):
    rows = driven_rows(2_000, task)
    model, contract = fitted(rows, family, task)
    explained = driven_rows(300, task, seed=9)
    frame = contributions(model, explained[contract.feature_names])
    # One column per input column: the 42 one-hot columns of `shop` are summed back to it.
    assert list(frame.columns) == ["driver", "noise", "shop", BIAS, MARGIN]
    margin = own_margin(model, explained[contract.feature_names])
    np.testing.assert_allclose(frame[MARGIN], margin, rtol=1e-5, atol=1e-4)
    added = frame[contract.feature_names].sum(axis=1) + frame[BIAS]
    np.testing.assert_allclose(added, margin, rtol=1e-5, atol=1e-4)
    assert not np.allclose(frame[contract.feature_names].sum(axis=1), margin, atol=1e-3)  # the bias counts
    if task == "classification":  # the margin is the log-odds of the positive class, not its probability
        probability = model.pipeline.predict_proba(explained[contract.feature_names])[:, 1]
        np.testing.assert_allclose(1 / (1 + np.exp(-margin)), probability, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    ("family", "method"),
    [("xgboost", "tree SHAP"), ("linear", "linear"), ("random_forest", "permutation")],
)
def test_the_feature_that_drives_the_label_ranks_first(family: Family, method: str):
    rows = driven_rows(3_000, "classification")
    model, contract = fitted(rows.iloc[:2_000], family, "classification")
    test = rows.iloc[2_000:]
    importance = permutation_importance_of(model, test, contract, seed=7, source="test")
    explanation = explain(model, test, contract.feature_names, seed=7, importance=importance)
    assert explanation.method == method
    assert next(iter(explanation.importances)) == "driver"
    assert set(explanation.importances) == {"driver", "shop", "noise"}  # original names, once each
    assert explanation.importances["driver"] > 5 * max(explanation.importances[n] for n in ("shop", "noise"))
    assert explanation.table()[0]["feature"] == "driver"
    if method != "permutation":
        assert explanation.rows == 128 and explanation.seed == 7
        again = explain(model, test, contract.feature_names, seed=7, importance=importance)
        assert again.importances == explanation.importances  # seeded sample
    figure = explanation_plot(explanation)
    assert figure.axes[0].get_yticklabels()[-1].get_text() == "driver"  # the largest on top


def test_models_with_no_exact_contributions_are_refused_by_name():
    rows = driven_rows(500, "classification")
    model, contract = fitted(rows, "random_forest", "classification")
    with pytest.raises(ConfigError, match="RandomForestClassifier has no exact per-row contributions"):
        contributions(model, rows[contract.feature_names])
    three = rows.assign(label=np.select([rows["driver"] < -0.5, rows["driver"] > 0.5], ["low", "high"], "mid"))
    model, contract = fitted(three, "xgboost", "classification")
    with pytest.raises(ConfigError, match="the model has 3 classes"):
        contributions(model, three[contract.feature_names])
