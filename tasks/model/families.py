"""Model families: which estimators mlpipe trains, their defaults, and the hyperparameters that differ."""

from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from sklearn.base import BaseEstimator
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.linear_model import LogisticRegression, Ridge
from xgboost import XGBClassifier, XGBRegressor

from mlpipe.errors import ConfigError
from mlpipe.tasks.contract import TaskType

Family = Literal["xgboost", "random_forest", "extra_trees", "hist_gradient_boosting", "linear"]


ParamValue = bool | int | float | str | None


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
