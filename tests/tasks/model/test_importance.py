"""Permutation importance over the model's input columns: features the model leans on rank first, seeded."""

import numpy as np
import pandas as pd
import pytest
from scipy import sparse
from sklearn.linear_model import Ridge
from sklearn.pipeline import Pipeline

from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.model.families import ModelSpec, build_estimator
from mlpipe.tasks.model.importance import _shuffled, permutation_importance_of
from mlpipe.tasks.model.preprocessing import build_preprocessor, input_blocks
from mlpipe.tasks.model.pyfunc import TabularModel
from mlpipe.tasks.model.train import encode_target

pytestmark = pytest.mark.unit


def test_importance_ranks_the_features_the_label_depends_on_above_those_it_does_not(demo_frame: pd.DataFrame):
    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    train, holdout = demo_frame.iloc[:2_000], demo_frame.iloc[2_000:]
    preprocessor = build_preprocessor(contract, "xgboost")
    estimator = build_estimator(ModelSpec(params={"n_estimators": 40}), "classification", n_jobs=1)
    y, classes = encode_target(train["default"], contract, "train")
    pipeline = Pipeline([("preprocess", preprocessor), ("model", estimator)]).fit(train, y)
    model = TabularModel(pipeline, "classification", classes)

    importance = permutation_importance_of(model, holdout, contract, seed=7, source="holdout")
    assert set(importance.importances) == set(contract.feature_names)
    assert importance.rows == 1_000 and importance.loss == "log loss" and importance.seconds < 10
    ranked = sorted(importance.importances, key=importance.importances.__getitem__, reverse=True)
    # The demo label depends on the credit score and rate, not on the region (without drift).
    assert {"credit_score", "interest_rate", "delinquencies_2y"} & set(ranked[:3])
    assert importance.importances["region"] < importance.importances[ranked[0]] / 10
    assert "permutation importance (log loss on 1,000 holdout rows" in importance.describe()
    again = permutation_importance_of(model, holdout, contract, seed=7, source="holdout")
    assert again.importances == importance.importances


@pytest.mark.parametrize("family", ["xgboost", "linear", "hist_gradient_boosting"])
def test_shuffling_a_columns_block_of_outputs_is_shuffling_the_column(demo_frame: pd.DataFrame, family: str):
    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    rows = demo_frame.iloc[:500]
    preprocessor = build_preprocessor(contract, family).fit(rows)  # type: ignore[arg-type]
    dense = lambda matrix: matrix.toarray() if sparse.issparse(matrix) else np.asarray(matrix)  # noqa: E731
    before = dense(preprocessor.transform(rows))
    blocks = input_blocks(preprocessor)
    assert sorted(blocks) == sorted(contract.feature_names)
    assert sum(block.stop - block.start for block in blocks.values()) == before.shape[1]
    order = np.random.default_rng(1).permutation(len(rows))
    for name in ("income", "purpose", "has_cosigner"):
        after = dense(preprocessor.transform(rows.assign(**{name: rows[name].to_numpy()[order]})))
        for stored in (before, sparse.csc_matrix(before)):  # as the estimator was given it: dense or sparse
            np.testing.assert_array_equal(dense(_shuffled(stored, blocks[name], order)), after)


def test_a_regression_on_sparse_one_hot_input_ranks_what_drives_it():
    rng = np.random.default_rng(5)
    rows = pd.DataFrame({"size": rng.normal(0, 1, 3_000), "shop": rng.choice([f"s{i}" for i in range(40)], 3_000)})
    rows["noise"] = rng.normal(0, 1, 3_000)
    rows["price"] = 3 * rows["size"] + rng.normal(0, 0.1, 3_000)
    contract = infer_contract(rows, "price")
    pipeline = Pipeline([("preprocess", build_preprocessor(contract, "linear")), ("model", Ridge())])
    pipeline.fit(rows, rows["price"])
    assert sparse.issparse(pipeline[0].transform(rows.head(5)))  # 43 one-hot columns: mostly zeros
    importance = permutation_importance_of(TabularModel(pipeline, "regression", None), rows, contract, 3, "rows")
    assert importance.loss == "squared error" and importance.rows == 2_000  # capped
    assert importance.importances["size"] > 10 > 0.1 > max(importance.importances[n] for n in ("shop", "noise"))
