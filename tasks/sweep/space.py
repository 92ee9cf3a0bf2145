"""Search spaces as data: distributions per hyperparameter, one conditional sub-space per model family.

A space file maps model families to their hyperparameters; each value is either fixed (a plain
value) or a distribution:

    xgboost:
      n_estimators: 300
      learning_rate: {type: loguniform, low: 0.01, high: 0.3}
      max_depth: {type: int, low: 2, high: 10}
      grow_policy: {type: choice, values: [depthwise, lossguide]}
    random_forest:
      min_samples_leaf: {type: int, low: 1, high: 64, log: true}

With several families the family itself is the first choice of every trial. Every problem
(a bad range, an unknown distribution, an empty choice, a parameter the family does not take)
is found when the space is loaded, before any trial runs, and names the parameter.
"""

import itertools
from pathlib import Path
from typing import Any, Literal, get_args

import optuna
from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from sklearn.base import BaseEstimator

from mlpipe.errors import ConfigError, load_yaml
from mlpipe.tasks.contract import TaskType
from mlpipe.tasks.model.families import Family, ModelSpec, ParamValue, family_defaults, refusal

DistributionType = Literal["uniform", "loguniform", "int", "choice"]
FAMILIES: tuple[str, ...] = get_args(Family)
ROUNDS = {
    "xgboost": "n_estimators",
    "random_forest": "n_estimators",
    "extra_trees": "n_estimators",
    "hist_gradient_boosting": "max_iter",
}
"""The parameter that counts the trees or iterations a family grows: the steps its trials report at."""
FAMILY_PARAM = "family"
"""The optuna parameter that picks the model family when a space has several."""


class Distribution(BaseModel):
    """One hyperparameter's range: `uniform`/`loguniform` floats, `int` (with `step` or `log`), or a `choice`."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    type: DistributionType
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False
    values: list[ParamValue] | None = None

    @model_validator(mode="after")
    def _consistent(self) -> "Distribution":
        if self.type == "choice":
            if not self.values:
                raise ValueError("a choice needs at least one value")
            if self.low is not None or self.high is not None:
                raise ValueError("a choice takes `values`, not low/high")
            return self
        if self.low is None or self.high is None:
            raise ValueError(f"{self.type} needs `low` and `high`")
        if self.low > self.high:
            raise ValueError(f"low {self.low:g} is greater than high {self.high:g}")
        if self.type == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise ValueError("int bounds must be whole numbers")
        if (self.type == "loguniform" or self.log) and self.low <= 0:
            raise ValueError(f"a log scale needs low > 0, got {self.low:g}")
        if self.step is not None and (self.step <= 0 or self.log or self.type == "loguniform"):
            raise ValueError("step must be positive and cannot be combined with a log scale")
        return self

    def suggest(self, trial: optuna.Trial, name: str) -> ParamValue:
        """Draw this parameter for `trial` through optuna's public suggest API."""
        if self.type == "choice":
            return trial.suggest_categorical(name, self.values or [])
        assert self.low is not None and self.high is not None
        if self.type == "int":
            return trial.suggest_int(name, int(self.low), int(self.high), step=int(self.step or 1), log=self.log)
        log = self.type == "loguniform" or self.log
        return trial.suggest_float(name, self.low, self.high, step=self.step, log=log)

    def grid(self, name: str) -> list[ParamValue]:
        """Every value this distribution can take; only finite ones can be searched on a grid."""
        if self.type == "choice":
            return list(self.values or [])
        if self.type == "int" and not self.log:
            assert self.low is not None and self.high is not None
            return list(range(int(self.low), int(self.high) + 1, int(self.step or 1)))
        if self.type == "uniform" and self.step is not None:
            assert self.low is not None and self.high is not None
            count = round((self.high - self.low) / self.step) + 1
            return [round(self.low + i * self.step, 12) for i in range(count)]
        raise ConfigError(f"parameter '{name}': grid search needs finite values (a choice, an int, or a step)")


Param = Distribution | ParamValue


class SearchSpace(BaseModel):
    """Model family → hyperparameter → fixed value or distribution."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    families: dict[Family, dict[str, Param]]

    @property
    def prefixed(self) -> bool:
        """Parameter names carry their family (`xgboost.max_depth`) when there are several families."""
        return len(self.families) > 1

    def optuna_name(self, family: str, name: str) -> str:
        return f"{family}.{name}" if self.prefixed else name

    def check(self, task: TaskType) -> None:
        """Every parameter is one the family's estimator takes for `task`, with values it accepts."""
        for family, params in self.families.items():
            cls, defaults = family_defaults(family, task, seed=0, n_jobs=1)
            estimator = cls(**defaults)
            known = estimator.get_params()
            for name, param in params.items():
                label = self.optuna_name(family, name) if self.prefixed else f"{family}.{name}"
                if name not in known:
                    raise ConfigError(
                        f"search space: parameter '{label}': {family} ({cls.__name__}) has no such parameter"
                    )
                for value in _extremes(param):
                    _check_value(estimator, name, value, label)

    def suggest(self, trial: optuna.Trial, seed: int) -> ModelSpec:
        """The trial's model: its family and every fixed and sampled hyperparameter."""
        families = list(self.families)
        family = trial.suggest_categorical(FAMILY_PARAM, families) if self.prefixed else families[0]
        params: dict[str, ParamValue] = {}
        for name, param in self.families[family].items():  # type: ignore[index]
            if isinstance(param, Distribution):
                params[name] = param.suggest(trial, self.optuna_name(family, name))
            else:
                params[name] = param
        return ModelSpec(family=family, params=params, seed=seed)

    def spec_from_params(self, params: dict[str, Any], seed: int) -> ModelSpec:
        """The model a finished trial trained, rebuilt from its optuna parameters."""
        family = params[FAMILY_PARAM] if self.prefixed else next(iter(self.families))
        chosen: dict[str, ParamValue] = {}
        for name, param in self.families[family].items():
            chosen[name] = params[self.optuna_name(family, name)] if isinstance(param, Distribution) else param
        return ModelSpec(family=family, params=chosen, seed=seed)

    def grid(self) -> dict[str, list[ParamValue]]:
        """The grid for optuna's GridSampler: every distribution's values (one family only)."""
        if self.prefixed:
            raise ConfigError("grid search takes a space with one model family; use random or tpe for several")
        (family, params), *_ = self.families.items()
        return {
            self.optuna_name(family, name): param.grid(self.optuna_name(family, name))
            for name, param in params.items()
            if isinstance(param, Distribution)
        }

    def fewest_rounds(self) -> int | None:
        """The fewest trees or boosting iterations any trial can grow (None: no family grows in rounds)."""
        sizes = []
        for family, params in self.families.items():
            if family not in ROUNDS:
                continue
            _, defaults = family_defaults(family, "classification", seed=0, n_jobs=1)
            value = params.get(ROUNDS[family], defaults[ROUNDS[family]])
            if isinstance(value, Distribution) and value.low is not None:
                sizes.append(int(value.low))
            elif isinstance(value, int):
                sizes.append(value)
        return min(sizes) if sizes else None

    def grid_size(self) -> int:
        return len(list(itertools.product(*self.grid().values())))


def parse_space(data: object, source: str) -> SearchSpace:
    """A space from its mapping form, with errors that name the parameter."""
    if not isinstance(data, dict) or not data:
        raise ConfigError(f"{source}: expected a mapping of model families to hyperparameters")
    families: dict[str, dict[str, Param]] = {}
    for family, params in data.items():
        if family not in FAMILIES:
            raise ConfigError(f"{source}: unknown model family '{family}'; expected one of {list(FAMILIES)}")
        if params is None:
            params = {}
        if not isinstance(params, dict):
            raise ConfigError(f"{source}: family '{family}': expected a mapping of hyperparameters")
        families[family] = {
            name: _parse_param(value, f"{source}: parameter '{family}.{name}'") for name, value in params.items()
        }
    return SearchSpace(families=families)


def load_space(path: str | Path) -> SearchSpace:
    """Read a YAML or JSON search space file."""
    path = Path(path)
    return parse_space(load_yaml(path, "search space file"), f"search space file {path}")


def _parse_param(value: object, where: str) -> Param:
    if not isinstance(value, dict):
        if isinstance(value, list):
            raise ConfigError(f"{where}: a list is not a value; write {{type: choice, values: [...]}}")
        return value  # type: ignore[return-value]
    kind = value.get("type")
    if kind not in get_args(DistributionType):
        raise ConfigError(f"{where}: unknown distribution {kind!r}; expected one of {list(get_args(DistributionType))}")
    try:
        return Distribution.model_validate(value)
    except ValidationError as error:
        problem = error.errors()[0]
        field = ".".join(str(part) for part in problem["loc"])
        message = str(problem["msg"]).removeprefix("Value error, ")
        raise ConfigError(f"{where}: {field + ': ' if field else ''}{message}") from None


def _extremes(param: Param) -> list[ParamValue]:
    if not isinstance(param, Distribution):
        return [param]
    if param.type == "choice":
        return list(param.values or [])
    assert param.low is not None and param.high is not None
    if param.type == "int":
        return [int(param.low), int(param.high)]
    return [param.low, param.high]


def _check_value(estimator: BaseEstimator, name: str, value: ParamValue, label: str) -> None:
    """Ask the estimator before any trial runs."""
    why = refusal(estimator, name, value)
    if why:
        raise ConfigError(f"search space: parameter '{label}': value {value!r} is not accepted: {why}")


def _range(low: float, high: float, **kwargs: Any) -> Distribution:
    return Distribution(type=kwargs.pop("type", "uniform"), low=low, high=high, **kwargs)


def auto_space(task: TaskType) -> SearchSpace:
    """The AutoML space: five families with ranges that suit most tabular problems."""
    forest: dict[str, Param] = {
        "n_estimators": 200,
        "max_depth": _range(4, 24, type="int"),
        "min_samples_leaf": _range(1, 32, type="int", log=True),
        "max_features": _range(0.2, 1.0),
    }
    linear: dict[str, Param] = (
        {"C": _range(1e-3, 100.0, type="loguniform")}
        if task == "classification"
        else {"alpha": _range(1e-3, 100.0, type="loguniform")}
    )
    return SearchSpace(
        families={
            "xgboost": {
                "n_estimators": 300,
                "learning_rate": _range(0.02, 0.3, type="loguniform"),
                "max_depth": _range(2, 10, type="int"),
                "min_child_weight": _range(1, 32, type="int", log=True),
                "subsample": _range(0.5, 1.0),
                "colsample_bytree": _range(0.4, 1.0),
                "reg_lambda": _range(1e-3, 10.0, type="loguniform"),
            },
            "random_forest": forest,
            "extra_trees": dict(forest),
            "hist_gradient_boosting": {
                "max_iter": 300,
                "learning_rate": _range(0.02, 0.3, type="loguniform"),
                "max_leaf_nodes": _range(8, 128, type="int", log=True),
                "min_samples_leaf": _range(5, 100, type="int", log=True),
                "l2_regularization": _range(1e-4, 10.0, type="loguniform"),
            },
            "linear": linear,
        }
    )
