"""Model families: which estimators mlpipe trains, their defaults, and the hyperparameters that differ."""

from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from mlpipe.errors import ConfigError
from mlpipe.tasks.contract import TaskType
from mlpipe.validation import Strict

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

Family = Literal["xgboost", "random_forest", "extra_trees", "hist_gradient_boosting", "linear"]


ParamValue = bool | int | float | str | None

GPU_FAMILIES: frozenset[Family] = frozenset({"xgboost"})
"""Families with a CUDA implementation; the others train on CPU workers whatever device is asked for."""


class ModelSpec(Strict):
    """Which family to train and the hyperparameters that differ from its defaults."""

    family: Family = "xgboost"
    params: dict[str, ParamValue] = Field(default_factory=dict)
    seed: int = 42

    @model_validator(mode="after")
    def _known_params(self) -> "ModelSpec":
        """Reject a misspelt hyperparameter, or a value the estimator refuses, when the run is configured.

        A parameter must exist, and its value be accepted, for the classifier or the regressor of
        the family (the task is known only once the data is read). With no parameter to check, the
        family's library is not imported: a command validating its configuration stays quick.
        """
        if not self.params:
            return self
        estimators = [
            cls(**defaults)
            for cls, defaults in (
                family_defaults(self.family, task, self.seed, n_jobs=1) for task in ("classification", "regression")
            )
        ]
        unknown = sorted(set(self.params) - {name for estimator in estimators for name in estimator.get_params()})
        if unknown:
            raise ValueError(f"model '{self.family}' has no parameter(s) {unknown}")
        for name, value in self.params.items():
            refusals = [refusal(e, name, value) for e in estimators if name in e.get_params()]
            if all(refusals):
                raise ValueError(f"model '{self.family}': {name}={value!r} is not accepted: {refusals[0]}")
        return self


def family_defaults(family: Family, task: TaskType, seed: int, n_jobs: int) -> tuple[type, dict[str, Any]]:
    """The estimator class and the defaults mlpipe uses for it (each library is imported when its family is used)."""
    classification = task == "classification"
    if family == "xgboost":
        from xgboost import XGBClassifier, XGBRegressor

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
        from sklearn.ensemble import (
            ExtraTreesClassifier,
            ExtraTreesRegressor,
            RandomForestClassifier,
            RandomForestRegressor,
        )

        forests = {
            "random_forest": (RandomForestClassifier, RandomForestRegressor),
            "extra_trees": (ExtraTreesClassifier, ExtraTreesRegressor),
        }
        cls = forests[family][0 if classification else 1]
        return cls, {"n_estimators": 200, "min_samples_leaf": 2, "random_state": seed, "n_jobs": n_jobs}
    if family == "hist_gradient_boosting":
        from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor

        cls = HistGradientBoostingClassifier if classification else HistGradientBoostingRegressor
        return cls, {"max_iter": 200, "early_stopping": False, "random_state": seed}
    from sklearn.linear_model import LogisticRegression, Ridge

    if classification:
        return LogisticRegression, {"max_iter": 1000, "random_state": seed}
    return Ridge, {"alpha": 1.0}


def on_device(spec: ModelSpec, device: Literal["cpu", "cuda"]) -> ModelSpec:
    """`spec` set to train on `device`: xgboost gets `device="cuda"` (a `device` the user set wins); others are kept."""
    if device == "cuda" and spec.family in GPU_FAMILIES:
        return spec.model_copy(update={"params": {"device": "cuda", **spec.params}})
    return spec


def refusal(estimator: "BaseEstimator", name: str, value: ParamValue) -> str | None:
    """Why `estimator` refuses `value` for parameter `name`, or None when it takes it.

    scikit-learn estimators declare what each parameter accepts, so a bad value is found before
    any data is read; xgboost checks its parameters only when it trains.
    """
    if not hasattr(estimator, "_parameter_constraints"):
        return None
    probe = estimator.__class__(**{**estimator.get_params(), name: value})
    try:
        probe._validate_params()
    except ValueError as error:
        return str(error)
    return None


def build_estimator(spec: ModelSpec, task: TaskType, n_jobs: int) -> "BaseEstimator":
    """The configured estimator; an unknown hyperparameter is an error that names it."""
    cls, defaults = family_defaults(spec.family, task, spec.seed, n_jobs)
    estimator = cls(**defaults)
    unknown = sorted(set(spec.params) - set(estimator.get_params()))
    if unknown:
        raise ConfigError(f"model '{spec.family}' has no parameter(s) {unknown}")
    return estimator.set_params(**spec.params)
