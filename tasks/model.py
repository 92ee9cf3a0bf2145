"""Model families, the preprocessing that travels inside every model, and the served pyfunc."""

from typing import Any, Literal

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from pydantic import BaseModel, Field, model_validator
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from xgboost import XGBClassifier, XGBRegressor

from mlpipe.errors import ConfigError
from tasks.contract import DataContract, TaskType

Family = Literal["xgboost", "random_forest", "extra_trees", "hist_gradient_boosting", "linear"]
ParamValue = bool | int | float | str | None

MAX_ONE_HOT = 50
"""Categories beyond the most frequent this many share one `<other>` column."""


class ModelSpec(BaseModel):
    """Which family to train and the hyperparameters that differ from its defaults."""

    family: Family = "xgboost"
    params: dict[str, ParamValue] = Field(default_factory=dict)
    seed: int = 42

    @model_validator(mode="after")
    def _known_params(self) -> "ModelSpec":
        """Reject a misspelt hyperparameter when the run is configured, not after the data steps."""
        known: set[str] = set()
        for task in ("classification", "regression"):
            cls, defaults = family_defaults(self.family, task, self.seed, n_jobs=1)
            known |= set(cls(**defaults).get_params())
        unknown = sorted(set(self.params) - known)
        if unknown:
            raise ValueError(f"model '{self.family}' has no parameter(s) {unknown}")
        return self


def family_defaults(family: Family, task: TaskType, seed: int, n_jobs: int) -> tuple[type, dict[str, Any]]:
    """The estimator class and the defaults mlpipe uses for it."""
    classification = task == "classification"
    if family == "xgboost":
        cls: type = XGBClassifier if classification else XGBRegressor
        return cls, {
            "n_estimators": 300,
            "learning_rate": 0.1,
            "max_depth": 6,
            "tree_method": "hist",
            "random_state": seed,
            "n_jobs": n_jobs,
        }
    if family in ("random_forest", "extra_trees"):
        forests = {
            "random_forest": (RandomForestClassifier, RandomForestRegressor),
            "extra_trees": (ExtraTreesClassifier, ExtraTreesRegressor),
        }
        cls = forests[family][0 if classification else 1]
        return cls, {"n_estimators": 200, "min_samples_leaf": 2, "random_state": seed, "n_jobs": n_jobs}
    if family == "hist_gradient_boosting":
        cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
        return cls, {"max_iter": 200, "early_stopping": False, "random_state": seed}
    if classification:
        return LogisticRegression, {"max_iter": 1000, "random_state": seed}
    return Ridge, {"alpha": 1.0}


def build_estimator(spec: ModelSpec, task: TaskType, n_jobs: int) -> BaseEstimator:
    """The configured estimator; an unknown hyperparameter is an error that names it."""
    cls, defaults = family_defaults(spec.family, task, spec.seed, n_jobs)
    estimator = cls(**defaults)
    unknown = sorted(set(spec.params) - set(estimator.get_params()))
    if unknown:
        raise ConfigError(f"model '{spec.family}' has no parameter(s) {unknown}")
    return estimator.set_params(**spec.params)


class OneHotTop(TransformerMixin, BaseEstimator):
    """One-hot encoding of each column's most frequent values, plus `<other>` and `<missing>`.

    Counting and coding are vectorised (pandas value counts and categorical codes); scikit-learn's
    OneHotEncoder counts string categories element by element in Python, which took 5 s of a
    700k-row fit and held the GIL throughout. Unseen values at prediction time count as `<other>`.
    """

    def __init__(self, max_categories: int = MAX_ONE_HOT) -> None:
        self.max_categories = max_categories

    def fit(self, frame: pd.DataFrame, y: Any = None) -> "OneHotTop":
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.categories_ = [
            frame[name].value_counts(dropna=True).index[: self.max_categories].tolist() for name in frame.columns
        ]
        return self

    def transform(self, frame: pd.DataFrame) -> sparse.csr_matrix:
        blocks = []
        for name, categories in zip(self.feature_names_in_, self.categories_, strict=True):
            column = frame[name]
            codes = pd.Categorical(column, categories=categories).codes.astype("int64")
            codes[codes < 0] = len(categories)  # <other>
            codes[column.isna().to_numpy()] = len(categories) + 1  # <missing>
            rows = np.arange(len(codes))
            blocks.append(
                sparse.csr_matrix((np.ones(len(codes)), (rows, codes)), shape=(len(codes), len(categories) + 2))
            )
        return sparse.hstack(blocks, format="csr")

    def get_feature_names_out(self, input_features: Any = None) -> np.ndarray:
        return np.asarray(
            [
                f"{name}={value}"
                for name, categories in zip(self.feature_names_in_, self.categories_, strict=True)
                for value in [*categories, "<other>", "<missing>"]
            ],
            dtype=object,
        )


def build_preprocessor(contract: DataContract, family: Family) -> ColumnTransformer:
    """Impute, scale (linear models only) and one-hot encode, from the contract's column kinds.

    Histogram gradient boosting takes no sparse input, so its features come out dense.
    """
    numeric = [c.name for c in contract.features if c.kind == "numeric"]
    categorical = [c.name for c in contract.features if c.kind in ("string", "boolean")]
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    if family == "linear":
        numeric_steps.append(("scale", StandardScaler()))
    return ColumnTransformer(
        [("numeric", Pipeline(numeric_steps), numeric), ("categorical", OneHotTop(), categorical)],
        remainder="drop",
        sparse_threshold=0.0 if family == "hist_gradient_boosting" else 0.3,
    )


class TabularModel(PythonModel):
    """What is registered and served: preprocessing + estimator, taking raw rows.

    `predict` returns a frame with `prediction` (original labels for classifiers) and, for
    classifiers, one `probability_<label>` column per class.
    """

    def __init__(self, pipeline: Pipeline, task: TaskType, classes: list[Any] | None) -> None:
        self.pipeline = pipeline
        self.task = task
        self.classes = classes

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return predict_frame(self.pipeline, self.task, self.classes, model_input)


def predict_frame(pipeline: Pipeline, task: TaskType, classes: list[Any] | None, rows: pd.DataFrame) -> pd.DataFrame:
    """Predictions (and class probabilities) for raw rows."""
    raw = pipeline.predict(rows) if task == "regression" else pipeline.predict_proba(rows)
    return output_frame(raw, task, classes, rows.index)


def output_frame(raw: np.ndarray, task: TaskType, classes: list[Any] | None, index: Any = None) -> pd.DataFrame:
    """The served output from an estimator's raw output: predictions, or class probabilities.

    A one-dimensional output of a classifier is the positive class's probability (xgboost's
    booster gives that for binary problems).
    """
    if task == "regression":
        return pd.DataFrame({"prediction": np.asarray(raw, dtype="float64")}, index=index)
    assert classes is not None
    probabilities = np.asarray(raw)
    if probabilities.ndim == 1:
        probabilities = np.column_stack([1.0 - probabilities, probabilities])
    frame = pd.DataFrame({f"probability_{label}": probabilities[:, i] for i, label in enumerate(classes)}, index=index)
    frame.insert(0, "prediction", np.asarray(classes)[probabilities.argmax(axis=1)])
    return frame
