"""Model families, the preprocessing that travels inside every model, and the served pyfunc."""

from typing import Any, Literal

import mlflow.pyfunc
import numpy as np
import pandas as pd
from pydantic import BaseModel, Field
from sklearn.base import BaseEstimator
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from xgboost import XGBClassifier, XGBRegressor

from mlpipe.errors import ConfigError
from tasks.contract import DataContract, TaskType

Family = Literal["xgboost", "random_forest", "linear"]
ParamValue = bool | int | float | str | None

MAX_ONE_HOT = 50
"""Categories beyond the most frequent this many share one 'infrequent' column."""


class ModelSpec(BaseModel):
    """Which family to train and the hyperparameters that differ from its defaults."""

    family: Family = "xgboost"
    params: dict[str, ParamValue] = Field(default_factory=dict)
    seed: int = 42


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
    if family == "random_forest":
        cls = RandomForestClassifier if classification else RandomForestRegressor
        return cls, {"n_estimators": 200, "min_samples_leaf": 2, "random_state": seed, "n_jobs": n_jobs}
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


def as_text(frame: pd.DataFrame) -> pd.DataFrame:
    """Categorical columns as plain strings, missing values included as their own category."""
    return frame.astype("str")


def build_preprocessor(contract: DataContract, family: Family) -> ColumnTransformer:
    """Impute, scale (linear models only) and one-hot encode, from the contract's column kinds."""
    numeric = [c.name for c in contract.columns if c.kind == "numeric" and c.name in contract.feature_names]
    categorical = [
        c.name for c in contract.columns if c.kind in ("string", "boolean") and c.name in contract.feature_names
    ]
    numeric_steps: list[tuple[str, Any]] = [("impute", SimpleImputer(strategy="median", keep_empty_features=True))]
    if family == "linear":
        numeric_steps.append(("scale", StandardScaler()))
    categorical_steps = [
        ("text", FunctionTransformer(as_text, feature_names_out="one-to-one")),
        ("one_hot", OneHotEncoder(handle_unknown="infrequent_if_exist", max_categories=MAX_ONE_HOT)),
    ]
    return ColumnTransformer(
        [("numeric", Pipeline(numeric_steps), numeric), ("categorical", Pipeline(categorical_steps), categorical)],
        remainder="drop",
    )


class TabularModel(mlflow.pyfunc.PythonModel):
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
    if task == "regression":
        return pd.DataFrame({"prediction": np.asarray(pipeline.predict(rows), dtype="float64")}, index=rows.index)
    assert classes is not None
    probabilities = pipeline.predict_proba(rows)
    frame = pd.DataFrame(
        {f"probability_{label}": probabilities[:, i] for i, label in enumerate(classes)}, index=rows.index
    )
    frame.insert(0, "prediction", np.asarray(classes)[probabilities.argmax(axis=1)])
    return frame
