"""Differentially private models: bounds from the contract, never the data, and a budget that shows in accuracy."""

import warnings

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError
from sklearn.pipeline import Pipeline

from mlpipe.errors import ConfigError
from mlpipe.tasks.contract import ColumnContract, DataContract, ObservedValues
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.model.explanation import BIAS, MARGIN, contributions, explain
from mlpipe.tasks.model.families import ModelSpec, build_estimator
from mlpipe.tasks.model.importance import FeatureImportance
from mlpipe.tasks.model.preprocessing import build_preprocessor
from mlpipe.tasks.model.privacy import PrivacyRecord, fit_private, private_inputs
from mlpipe.tasks.model.pyfunc import TabularModel
from mlpipe.tasks.model.train import encode_target

pytestmark = pytest.mark.unit


def declared_contract(task: str = "classification") -> DataContract:
    """Bounds and category sets a person wrote down, as a contract file declares them."""
    target = (
        ColumnContract(name="label", kind="string", allowed_values=["no", "yes"])
        if task == "classification"
        else ColumnContract(name="label", kind="numeric", minimum=-15.0, maximum=15.0)
    )
    return DataContract(
        target="label",
        task=task,  # type: ignore[arg-type]
        columns=[
            ColumnContract(name="driver", kind="numeric", minimum=-4.0, maximum=4.0, max_null_fraction=0.2),
            ColumnContract(name="noise", kind="numeric", minimum=-4.0, maximum=4.0),
            ColumnContract(name="shop", kind="string", allowed_values=["a", "b", "c", "d", "e"]),
            target,
        ],
        declared_in="shops-contract.yaml",
    )


def driven_rows(rows: int, seed: int, task: str = "classification") -> pd.DataFrame:
    """`driver` decides the label (plus noise); `noise` and `shop` do not."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame(
        {
            "driver": rng.normal(0, 1, rows),
            "noise": rng.normal(0, 1, rows),
            "shop": rng.choice(list("abcde"), rows),
        }
    )
    signal = 3 * frame["driver"] + rng.normal(0, 1, rows)
    frame["label"] = signal if task == "regression" else np.where(signal > 0, "yes", "no")
    return frame


def train_private(
    rows: pd.DataFrame, contract: DataContract, family: str, epsilon: float, seed: int
) -> tuple[TabularModel, PrivacyRecord]:
    """What the train step does, without MLflow: bounded preprocessing, the private fit and its record."""
    spec = ModelSpec(family=family, params={"epsilon": epsilon}, seed=seed)  # type: ignore[arg-type]
    estimator = build_estimator(spec, contract.task, n_jobs=1, contract=contract)
    preprocessor = build_preprocessor(contract, spec.family)
    y, classes = encode_target(rows[contract.target], contract, "rows", every_class=True)
    record = fit_private(estimator, preprocessor.fit_transform(rows), y, contract, spec.family)
    return TabularModel(Pipeline([("preprocess", preprocessor), ("model", estimator)]), contract.task, classes), record


def test_bounded_preprocessing_scales_by_the_contracts_bounds_whatever_the_data():
    contract = declared_contract()
    narrow = pd.DataFrame({"driver": [1.0, 2.0], "noise": [0.0, 0.5], "shop": ["a", "a"]})
    wide = pd.DataFrame({"driver": [-300.0, 900.0], "noise": [-9.0, 9.0], "shop": ["e", "z"]})
    new = pd.DataFrame(
        {
            "driver": [-4.0, 0.0, 2.0, 4.0, 40.0, None],
            "noise": [-8.0, 0.0, 0.0, 0.0, 0.0, 0.0],
            "shop": ["a", "e", "zz", None, "b", "c"],
        }
    )
    on_narrow = build_preprocessor(contract, "dp_logistic_regression").fit(narrow).transform(new)
    on_wide = build_preprocessor(contract, "dp_logistic_regression").fit(wide).transform(new)
    np.testing.assert_array_equal(on_narrow, on_wide)  # fitting learnt nothing from either
    assert on_narrow[:, 0].tolist() == [0.0, 0.5, 0.75, 1.0, 1.0, 0.5]  # clipped to [-4, 4]; a null in the middle
    assert on_narrow[:, 1].tolist() == [0.0, 0.5, 0.5, 0.5, 0.5, 0.5]
    # shop: a..e from the contract, then <other> and <missing>; "a" is coded although `wide` never had it
    assert on_narrow[:, 2:].tolist() == [
        [1, 0, 0, 0, 0, 0, 0],
        [0, 0, 0, 0, 1, 0, 0],
        [0, 0, 0, 0, 0, 1, 0],
        [0, 0, 0, 0, 0, 0, 1],
        [0, 1, 0, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0, 0],
    ]
    # Every row's norm is within the bound given to diffprivlib: √(input columns).
    assert np.linalg.norm(on_narrow, axis=1).max() <= private_inputs(contract).norm_bound == np.sqrt(3)


def test_the_record_names_bounds_taken_from_the_data_and_none_from_a_declared_contract(caplog):
    rows = driven_rows(500, seed=1)
    _, declared = train_private(rows, declared_contract(), "dp_logistic_regression", epsilon=1.0, seed=0)
    assert declared.bounds_from_data == [] and declared.warnings == []
    assert declared.bounds_from_contract == ["driver", "noise", "shop", "label"]
    assert declared.tags() == {"mlpipe.privacy.epsilon": "1", "mlpipe.privacy.bounds": "contract"}
    assert declared.data_norm == pytest.approx(np.sqrt(3))

    inferred_contract = infer_contract(rows, "label")
    caplog.clear()
    _, inferred = train_private(rows, inferred_contract, "dp_logistic_regression", epsilon=0.5, seed=0)
    assert inferred.epsilon == 0.5 and inferred.delta == 0.0
    assert inferred.bounds_from_data == ["driver", "noise", "shop", "label"]  # the classes too
    assert inferred.bounds_from_contract == []
    assert inferred.tags()["mlpipe.privacy.bounds"] == "data: driver, noise, shop, label"
    assert len(inferred.warnings) == 1 and "come from the training data" in inferred.warnings[0]
    assert any("differential privacy:" in r.message and "'driver'" in r.message for r in caplog.records)


def test_regression_takes_the_targets_bounds_from_the_contract():
    rows = driven_rows(800, seed=2, task="regression")
    model, record = train_private(rows, declared_contract("regression"), "dp_linear_regression", epsilon=5.0, seed=0)
    assert record.target_bounds == (-15.0, 15.0) and record.bounds_from_data == []
    assert record.mechanism.startswith("diffprivlib LinearRegression")
    assert model.predict(None, rows.head(3))["prediction"].notna().all()
    frame = contributions(model, rows.head(20)[["driver", "noise", "shop"]])  # explained by its coefficients
    np.testing.assert_allclose(frame[["driver", "noise", "shop"]].sum(axis=1) + frame[BIAS], frame[MARGIN])


def test_diffprivlib_never_measures_bounds_itself_and_a_leak_it_reports_is_recorded():
    rows = driven_rows(400, seed=3)
    contract = declared_contract()
    with warnings.catch_warnings():
        warnings.simplefilter("error", category=RuntimeWarning)  # diffprivlib's PrivacyLeakWarning is one
        train_private(rows, contract, "dp_logistic_regression", epsilon=1.0, seed=0)
        train_private(
            driven_rows(400, 3, "regression"), declared_contract("regression"), "dp_linear_regression", 1.0, 0
        )

    from diffprivlib.utils import PrivacyLeakWarning

    spec = ModelSpec(family="dp_logistic_regression")
    estimator = build_estimator(spec, "classification", n_jobs=1, contract=contract).set_params(data_norm=None)
    y, _ = encode_target(rows["label"], contract, "rows")
    matrix = build_preprocessor(contract, spec.family).fit_transform(rows)
    with warnings.catch_warnings(record=True) as escaped:
        warnings.simplefilter("always")
        record = fit_private(estimator, matrix, y, contract, spec.family)
    assert not [w for w in escaped if issubclass(w.category, PrivacyLeakWarning)]
    assert any(w.startswith("diffprivlib: Data norm has not been specified") for w in record.warnings)


def test_accuracy_falls_as_epsilon_shrinks():
    """Less budget, more noise: test accuracy (mean of five seeded fits) rises strictly with epsilon."""
    contract = declared_contract()
    train, test = driven_rows(3_000, seed=11), driven_rows(2_000, seed=12)
    accuracy = {}
    for epsilon in (0.01, 0.1, 10.0):
        scores = []
        for seed in range(5):
            model, record = train_private(train, contract, "dp_logistic_regression", epsilon, seed)
            assert record.epsilon == epsilon
            scores.append((model.predict(None, test)["prediction"] == test["label"]).mean())
        accuracy[epsilon] = float(np.mean(scores))
    assert accuracy[0.01] < accuracy[0.1] < accuracy[10.0], accuracy
    assert accuracy[10.0] > 0.85, accuracy  # a generous budget learns the signal


def test_a_private_logistic_regression_is_explained_by_its_coefficients():
    rows = driven_rows(1_000, seed=4)
    model, _ = train_private(rows, declared_contract(), "dp_logistic_regression", epsilon=10.0, seed=0)
    features = ["driver", "noise", "shop"]
    frame = contributions(model, rows.head(20)[features])
    np.testing.assert_allclose(frame[features].sum(axis=1) + frame[BIAS], frame[MARGIN])
    unused = FeatureImportance(loss="log loss", rows=0, repeats=1, seed=0, seconds=0.0, importances={}, spread={})
    explanation = explain(model, rows, features, seed=0, importance=unused)
    assert explanation.method == "linear" and next(iter(explanation.importances)) == "driver"


def test_a_private_family_asked_for_the_other_task_is_named_with_it():
    with pytest.raises(ConfigError, match=r"model 'dp_logistic_regression' trains classification .* a regression task"):
        build_estimator(ModelSpec(family="dp_logistic_regression"), "regression", 1, contract=declared_contract())
    with pytest.raises(ConfigError, match=r"model 'dp_linear_regression' trains regression .* a classification task"):
        build_estimator(ModelSpec(family="dp_linear_regression"), "classification", 1, contract=declared_contract())


def test_private_parameters_are_checked_before_anything_runs():
    with pytest.raises(ValidationError, match=r"model 'dp_logistic_regression' has no parameter\(s\) \['epsilom'\]"):
        ModelSpec(family="dp_logistic_regression", params={"epsilom": 0.5})
    with pytest.raises(ValidationError, match=r"epsilon=0 is not accepted: it must be a positive number"):
        ModelSpec(family="dp_linear_regression", params={"epsilon": 0})
    with pytest.raises(ValidationError, match=r"\['data_norm'\] are set from the data contract's bounds"):
        ModelSpec(family="dp_logistic_regression", params={"data_norm": 3.0})
    with pytest.raises(ValidationError, match=r"model 'dp_logistic_regression': C=-1.0 is not accepted"):
        ModelSpec(family="dp_logistic_regression", params={"C": -1.0})
    assert ModelSpec(family="dp_logistic_regression", params={"epsilon": 0.5, "C": 2.0}).params["epsilon"] == 0.5


def test_a_numeric_column_without_bounds_is_named():
    contract = declared_contract()
    unbounded = contract.model_copy(
        update={
            "columns": [c.model_copy(update={"maximum": None}) if c.name == "noise" else c for c in contract.columns]
        }
    )
    with pytest.raises(ConfigError, match=r"column 'noise': a differentially private model needs its bounds"):
        build_preprocessor(unbounded, "dp_logistic_regression")
    # Half declared, half observed: usable, and counted as the data's.
    observed = unbounded.model_copy(
        update={
            "columns": [
                c.model_copy(update={"observed": ObservedValues(minimum=-1.0, maximum=3.5)}) if c.name == "noise" else c
                for c in unbounded.columns
            ]
        }
    )
    inputs = private_inputs(observed)
    assert inputs.numeric["noise"] == (-4.0, 3.5) and inputs.from_data == ["noise"]


def test_automl_leaves_private_families_out_and_a_space_checks_their_task():
    """Each trial of a private family spends its epsilon again: a sweep over them is the user's explicit choice."""
    from mlpipe.tasks.model.families import PRIVATE_FAMILIES
    from mlpipe.tasks.sweep.space import auto_space, parse_space

    for task in ("classification", "regression"):
        assert not set(auto_space(task).families) & set(PRIVATE_FAMILIES)  # type: ignore[arg-type]
    space = parse_space({"dp_logistic_regression": {"epsilon": {"type": "loguniform", "low": 0.1, "high": 1}}}, "s")
    space.check("classification")
    with pytest.raises(ConfigError, match=r"model 'dp_logistic_regression' trains classification models only"):
        space.check("regression")
