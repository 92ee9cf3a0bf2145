"""Model families: which estimators mlpipe trains, their defaults, and the hyperparameters that differ."""

import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from mlpipe.errors import ConfigError
from mlpipe.tasks.contract import DataContract, TaskType
from mlpipe.validation import Strict

if TYPE_CHECKING:
    from sklearn.base import BaseEstimator

Family = Literal[
    "xgboost",
    "random_forest",
    "extra_trees",
    "hist_gradient_boosting",
    "linear",
    "dp_logistic_regression",
    "dp_linear_regression",
]


ParamValue = bool | int | float | str | None

GPU_FAMILIES: frozenset[Family] = frozenset({"xgboost"})
"""Families with a CUDA implementation; the others train on CPU workers whatever device is asked for."""

PRIVATE_FAMILIES: dict[Family, TaskType] = {
    "dp_logistic_regression": "classification",
    "dp_linear_regression": "regression",
}
"""Families trained with differential privacy (diffprivlib), each for one task (tasks/model/privacy.py)."""
BOUND_PARAMS = frozenset({"data_norm", "bounds_X", "bounds_y", "accountant"})
"""A private family's parameters that mlpipe sets from the data contract's bounds, never the user: bounds
chosen by looking at the data would leak it outside epsilon."""


class ModelSpec(Strict):
    """Which family to train and the hyperparameters that differ from its defaults."""

    family: Family = "xgboost"
    params: dict[str, ParamValue] = Field(default_factory=dict)
    seed: int = 42
    distributed: bool | None = Field(
        default=None,
        description="xgboost only: train across every worker of the cluster with xgboost.dask (default: from "
        "DISTRIBUTED_ROWS training rows of a partitioned dataset)",
    )

    @model_validator(mode="after")
    def _distributed_xgboost(self) -> "ModelSpec":
        if self.distributed and self.family != "xgboost":
            raise ValueError(f"model '{self.family}': only xgboost trains distributed (distributed: true)")
        return self

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
                family_defaults(self.family, task, self.seed, n_jobs=1) for task in family_tasks(self.family)
            )
        ]
        unknown = sorted(set(self.params) - {name for estimator in estimators for name in estimator.get_params()})
        if unknown:
            raise ValueError(f"model '{self.family}' has no parameter(s) {unknown}")
        if self.family in PRIVATE_FAMILIES:
            _check_private_params(self.family, self.params)
        for name, value in self.params.items():
            refusals = [refusal(e, name, value) for e in estimators if name in e.get_params()]
            if all(refusals):
                raise ValueError(f"model '{self.family}': {name}={value!r} is not accepted: {refusals[0]}")
        return self


def family_tasks(family: Family) -> tuple[TaskType, ...]:
    """The tasks `family` trains models for: both, or the one of a private family."""
    private = PRIVATE_FAMILIES.get(family)
    return (private,) if private else ("classification", "regression")


def _check_private_params(family: Family, params: dict[str, ParamValue]) -> None:
    """A private family's bounds are the contract's, and its epsilon a positive number."""
    bound = sorted(set(params) & BOUND_PARAMS)
    if bound:
        raise ValueError(
            f"model '{family}': {bound} are set from the data contract's bounds, not as parameters "
            "(declare `minimum`/`maximum` in a contract file)"
        )
    epsilon = params.get("epsilon", 1.0)
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not 0 < epsilon < math.inf:
        raise ValueError(f"model '{family}': epsilon={epsilon!r} is not accepted: it must be a positive number")


def family_defaults(family: Family, task: TaskType, seed: int, n_jobs: int) -> tuple[type, dict[str, Any]]:
    """The estimator class and the defaults mlpipe uses for it (each library is imported when its family is used).

    Raises:
        ConfigError: a private family asked for the task it does not train.
    """
    classification = task == "classification"
    if family in PRIVATE_FAMILIES:
        return _private_defaults(family, task, seed)
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


def _private_defaults(family: Family, task: TaskType, seed: int) -> tuple[type, dict[str, Any]]:
    """diffprivlib's estimator, seeded (its noise too), with an accountant of its own that counts what it spends.

    One process may train several models: the library's shared default accountant would add up
    their budgets. diffprivlib's logistic regression fits one-vs-rest classes in worker processes
    when `n_jobs` allows; one process keeps a Dask worker's threads its own.
    """
    if PRIVATE_FAMILIES[family] != task:
        other = next(name for name, trains in PRIVATE_FAMILIES.items() if trains == task)
        raise ConfigError(
            f"model '{family}' trains {PRIVATE_FAMILIES[family]} models only, and this is a {task} task; "
            f"use '{other}' (or another family) for it"
        )
    from diffprivlib.accountant import BudgetAccountant
    from diffprivlib.models import LinearRegression, LogisticRegression

    if family == "dp_logistic_regression":
        return LogisticRegression, {
            "epsilon": 1.0,
            "max_iter": 1000,
            "random_state": seed,
            "n_jobs": 1,
            "accountant": BudgetAccountant(),
        }
    return LinearRegression, {"epsilon": 1.0, "random_state": seed, "accountant": BudgetAccountant()}


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


def build_estimator(
    spec: ModelSpec, task: TaskType, n_jobs: int, contract: DataContract | None = None
) -> "BaseEstimator":
    """The configured estimator; an unknown hyperparameter is an error that names it.

    A private family also takes the bounds its privacy rests on from `contract` (required for it).

    Raises:
        ConfigError: an unknown hyperparameter, a private family on the other task, or a numeric
            column of `contract` with no bounds.
    """
    cls, defaults = family_defaults(spec.family, task, spec.seed, n_jobs)
    estimator = cls(**defaults)
    unknown = sorted(set(spec.params) - set(estimator.get_params()))
    if unknown:
        raise ConfigError(f"model '{spec.family}' has no parameter(s) {unknown}")
    estimator.set_params(**spec.params)
    if spec.family in PRIVATE_FAMILIES:
        from mlpipe.tasks.model.privacy import estimator_bounds, private_inputs

        if contract is None:
            raise ValueError(f"model '{spec.family}' takes its bounds from the data contract: pass `contract`")
        estimator.set_params(**estimator_bounds(private_inputs(contract), spec.family))
    return estimator
