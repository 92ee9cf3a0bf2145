"""What a model takes: hyperparameters checked up front, one-hot coding, class labels from the contract."""

import pandas as pd
import pytest
from pydantic import ValidationError

from mlpipe.errors import ConfigError, DataError
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.model.families import ModelSpec, build_estimator

pytestmark = pytest.mark.unit


def test_unknown_hyperparameter_is_named_before_anything_runs():
    with pytest.raises(ValidationError, match=r"model 'xgboost' has no parameter\(s\) \['no_such'\]"):
        ModelSpec(params={"no_such": 1})
    with pytest.raises(ConfigError, match=r"model 'linear' has no parameter\(s\) \['C'\]"):
        build_estimator(ModelSpec(family="linear", params={"C": 2.0}), "regression", n_jobs=1)  # Ridge has alpha
    assert build_estimator(ModelSpec(family="linear"), "regression", n_jobs=1).alpha == 1.0


def test_one_hot_top_codes_rare_unseen_and_missing_values():
    from mlpipe.tasks.model.preprocessing import OneHotTop

    train = pd.DataFrame({"colour": ["red", "red", "blue", "green", None], "flag": [True, False, True, True, False]})
    encoder = OneHotTop(max_categories=2).fit(train)
    assert list(encoder.get_feature_names_out()) == [
        "colour=red", "colour=blue", "colour=<other>", "colour=<missing>",
        "flag=True", "flag=False", "flag=<other>", "flag=<missing>",
    ]  # fmt: skip
    new = pd.DataFrame({"colour": ["blue", "purple", None], "flag": [False, True, None]})
    assert encoder.transform(new).toarray().tolist() == [
        [0, 1, 0, 0, 0, 1, 0, 0],
        [0, 0, 1, 0, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0, 1],
    ]


def test_class_labels_come_from_the_contract_and_errors_name_them(demo_frame: pd.DataFrame):
    from mlpipe.tasks.model.train import encode_target

    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    codes, classes = encode_target(pd.Series([1, 0, 1], name="default"), contract, "x#test")
    assert classes == [0, 1] and codes.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match=r"x#test: target 'default' has labels \[2\] outside"):
        encode_target(pd.Series([1, 2], name="default"), contract, "x#test")
    with pytest.raises(DataError, match=r"x#train: target 'default' class\(es\) \[1\] have no rows"):
        encode_target(pd.Series([0, 0], name="default"), contract, "x#train", every_class=True)


def test_a_value_the_estimator_refuses_is_named_before_anything_runs():
    with pytest.raises(ValidationError, match=r"model 'random_forest': min_samples_leaf=-1 is not accepted"):
        ModelSpec(family="random_forest", params={"min_samples_leaf": -1})
    with pytest.raises(ValidationError, match=r"model 'linear': C=-2.0 is not accepted"):
        ModelSpec(family="linear", params={"C": -2.0})
    assert ModelSpec(family="random_forest", params={"criterion": "gini"}).params == {
        "criterion": "gini"
    }  # a classifier's
