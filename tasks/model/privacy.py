"""Differential privacy: the bounds a private model's guarantee rests on, its preprocessing, and its budget's record.

diffprivlib's models are ε-differentially private only relative to bounds on the data chosen
without looking at it: the largest norm of a row (logistic regression), the range of every input
and of the target (linear regression). mlpipe's usual preprocessing learns medians, means,
spreads and category sets from the training rows, which would leak them outside ε. A private
family preprocesses from the data contract instead: numbers clipped to their declared
`minimum`/`maximum` and scaled to [0, 1] by them, nulls set to the middle of the range (0.5),
categories one-hot from the declared `allowed_values`; fitting reads only the column names. A
preprocessed row is then bounded whatever the data: each number lies in [0, 1] and each
categorical column has exactly one 1 (its value, `<other>` or `<missing>`), so its L2 norm is at
most √(number of input columns).

An inferred contract declares no bounds: the ranges and categories it `observed` in the data
stand in for them, and that leak is said wherever the model is recorded (a warning in the run's
log, the `mlpipe.privacy.bounds` tag, `bounds_from_data` in `privacy.json`), never done quietly.
"""

import math
import warnings
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from pydantic import BaseModel

from mlpipe.errors import ConfigError
from mlpipe.tasks.caching import run_logger
from mlpipe.tasks.contract import ColumnContract, DataContract, Value
from mlpipe.tasks.model.families import Family

if TYPE_CHECKING:
    from numpy.typing import ArrayLike

PRIVACY_ARTIFACT = "privacy.json"
"""The privacy record stored with a private model's training run (read by the model card)."""
EPSILON_TAG, BOUNDS_TAG = "mlpipe.privacy.epsilon", "mlpipe.privacy.bounds"
MECHANISMS: dict[Family, str] = {
    "dp_logistic_regression": (
        "diffprivlib LogisticRegression: objective perturbation (Vector mechanism), rows clipped to L2 norm data_norm"
    ),
    "dp_linear_regression": (
        "diffprivlib LinearRegression: functional mechanism (Laplace noise on the objective's coefficients), "
        "inputs clipped to bounds_X and the target to bounds_y"
    ),
}
Source = Literal["contract", "data"]


class PrivateInputs(BaseModel):
    """What a private model knows of its inputs before it sees a row, and where each bound came from."""

    numeric: dict[str, tuple[float, float]]
    """Input column → (minimum, maximum)."""
    categories: dict[str, list[Value]]
    """Input column → its closed set of values (empty: only whether it is missing is known)."""
    target: tuple[float, float] | None = None
    """A regression target's (minimum, maximum)."""
    from_contract: list[str]
    from_data: list[str]
    """Columns whose bounds or categories (or, for a classification target, classes) the data showed."""
    notes: list[str]

    @property
    def norm_bound(self) -> float:
        """The largest L2 norm a preprocessed row can have: √(number of input columns)."""
        return math.sqrt(max(1, len(self.numeric) + len(self.categories)))


class PrivacyRecord(BaseModel):
    """The privacy a model was trained with: stored as `privacy.json` with its run and tagged on its version."""

    mechanism: str
    epsilon: float
    """The ε the model's training spent, as diffprivlib's accountant counted it."""
    delta: float = 0.0
    library: str
    data_norm: float | None = None
    """The L2 norm rows were clipped to (logistic regression)."""
    target_bounds: tuple[float, float] | None = None
    """The range the target was clipped to (linear regression)."""
    bounds_from_contract: list[str]
    bounds_from_data: list[str]
    warnings: list[str]

    def tags(self) -> dict[str, str]:
        """`mlpipe.privacy.epsilon` and `mlpipe.privacy.bounds` ("contract", or "data: " and the columns)."""
        bounds = f"data: {', '.join(self.bounds_from_data)}" if self.bounds_from_data else "contract"
        return {EPSILON_TAG: f"{self.epsilon:g}", BOUNDS_TAG: bounds}


def private_inputs(contract: DataContract) -> PrivateInputs:
    """Each input's bounds or categories, the regression target's bounds, and where they came from.

    Declared bounds (`minimum` and `maximum`) and closed sets (`allowed_values`) are the contract's;
    without them the contract's `observed` ones are used, which the data showed. A boolean's
    values are known from its kind; a classification target's classes are the contract file's, or
    the data's when the contract was inferred.

    Raises:
        ConfigError: a numeric column (or regression target) with neither declared nor observed bounds.
    """
    numeric: dict[str, tuple[float, float]] = {}
    categories: dict[str, list[Value]] = {}
    sources: dict[str, Source] = {}
    notes = []
    for column in contract.features:
        if column.kind == "numeric":
            numeric[column.name], sources[column.name] = _numeric_bounds(column, contract)
        elif column.kind in ("string", "boolean"):
            known = _categories(column)
            if known is None:
                categories[column.name] = []
                notes.append(
                    f"column '{column.name}' has no declared or observed category set: "
                    "the model sees only whether it is missing"
                )
            else:
                categories[column.name], sources[column.name] = known
    target = None
    if contract.task == "regression":
        target, sources[contract.target] = _numeric_bounds(contract.column(contract.target), contract)
    else:
        sources[contract.target] = "contract" if contract.declared_in else "data"
    return PrivateInputs(
        numeric=numeric,
        categories=categories,
        target=target,
        from_contract=[name for name, source in sources.items() if source == "contract"],
        from_data=[name for name, source in sources.items() if source == "data"],
        notes=notes,
    )


def _numeric_bounds(column: ColumnContract, contract: DataContract) -> tuple[tuple[float, float], Source]:
    """Declared bounds, else what the data showed (either end), else an error naming the column."""
    observed = column.observed
    lower = column.minimum if column.minimum is not None else observed.minimum if observed else None
    upper = column.maximum if column.maximum is not None else observed.maximum if observed else None
    if lower is None or upper is None:
        where = f"contract file {contract.declared_in}" if contract.declared_in else "contract"
        raise ConfigError(
            f"column '{column.name}': a differentially private model needs its bounds, and the {where} "
            "neither declares its `minimum` and `maximum` nor observed them; declare them in a contract file"
        )
    if lower > upper:
        raise ConfigError(f"column '{column.name}': minimum {lower:g} is greater than maximum {upper:g}")
    declared = column.minimum is not None and column.maximum is not None
    return (float(lower), float(upper)), "contract" if declared else "data"


def _categories(column: ColumnContract) -> tuple[list[Value], Source] | None:
    if column.allowed_values is not None:
        return list(column.allowed_values), "contract"
    if column.kind == "boolean":
        return [False, True], "contract"
    if column.observed is not None and column.observed.values is not None:
        return list(column.observed.values), "data"
    return None


def estimator_bounds(inputs: PrivateInputs, family: Family) -> dict[str, Any]:
    """The bounds diffprivlib needs so that it never measures them on the data itself."""
    if family == "dp_logistic_regression":
        return {"data_norm": inputs.norm_bound}
    return {"bounds_X": (0.0, 1.0), "bounds_y": inputs.target}


def is_private(estimator: object) -> bool:
    """Whether `estimator` is diffprivlib's: each of its fits spends its epsilon again."""
    return type(estimator).__module__.startswith("diffprivlib.")


def fit_private(estimator: Any, x: "ArrayLike", y: np.ndarray, contract: DataContract, family: Family) -> PrivacyRecord:
    """Fit `estimator` (built by `build_estimator` from `contract`) and record the privacy it was trained with.

    diffprivlib warns (`PrivacyLeakWarning`) when it has to measure a bound on the data itself;
    bounds are always passed, but should one be raised anyway it becomes one of the record's
    warnings instead of a line on a worker's stderr. Every warning is logged on the run.
    """
    from diffprivlib.utils import PrivacyLeakWarning

    inputs = private_inputs(contract)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PrivacyLeakWarning)
        estimator.fit(x, y)
    leaks = []
    for warning in caught:
        if issubclass(warning.category, PrivacyLeakWarning):
            leaks.append(f"diffprivlib: {warning.message}")
        else:
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)
    found = [
        f"the bounds or categories of {inputs.from_data} come from the training data (the contract's observed "
        "values), not from a contract file: they leak information outside epsilon; declare `minimum`/`maximum` "
        "and `allowed_values` (and the target's classes) in a contract file"
    ]
    spent_epsilon, spent_delta = estimator.accountant.total()
    record = PrivacyRecord(
        mechanism=MECHANISMS[family],
        epsilon=float(spent_epsilon),
        delta=float(spent_delta),
        library=f"diffprivlib {version('diffprivlib')}",
        data_norm=float(estimator.data_norm) if family == "dp_logistic_regression" else None,
        target_bounds=inputs.target,
        bounds_from_contract=inputs.from_contract,
        bounds_from_data=inputs.from_data,
        warnings=[*(found if inputs.from_data else []), *inputs.notes, *leaks],
    )
    log = run_logger(__name__)
    for message in record.warnings:
        log.warning("differential privacy: %s", message)
    return record
