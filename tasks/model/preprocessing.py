"""The preprocessing that travels inside every model: impute, scale (linear models) and one-hot encode."""

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, OneToOneFeatureMixin, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlpipe.tasks.contract import DataContract, Value
from mlpipe.tasks.model.families import PRIVATE_FAMILIES, Family
from mlpipe.tasks.model.privacy import PrivateInputs, private_inputs

MAX_ONE_HOT = 50
"""Categories beyond the most frequent this many share one `<other>` column."""
MISSING_AT = 0.5
"""Where a bounded scaler puts a null number on [0, 1]: the middle of its bounds, fixed before any row is seen."""


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


class BoundedScaler(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Numbers clipped to given bounds and scaled to [0, 1] by them; nulls at `MISSING_AT`.

    `fit` reads no value: the transform is the bounds', whatever range the data has.
    """

    def __init__(self, lower: list[float], upper: list[float]) -> None:
        self.lower = lower
        self.upper = upper

    def fit(self, frame: pd.DataFrame, y: Any = None) -> "BoundedScaler":
        if frame.shape[1] != len(self.lower) or len(self.lower) != len(self.upper):
            raise ValueError(f"{frame.shape[1]} columns for {len(self.lower)} lower and {len(self.upper)} upper bounds")
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        lower, upper = np.asarray(self.lower, dtype="float64"), np.asarray(self.upper, dtype="float64")
        width = np.where(upper > lower, upper - lower, 1.0)  # a single-value range maps to 0
        values = frame[list(self.feature_names_in_)].to_numpy(dtype="float64", na_value=np.nan)
        scaled = (np.clip(values, lower, upper) - lower) / width
        return np.where(np.isnan(scaled), MISSING_AT, scaled)


class ClosedOneHot(OneHotTop):
    """One-hot encoding of closed category sets given up front, plus `<other>` and `<missing>`; `fit` reads no value."""

    def __init__(self, categories: list[list[Value]]) -> None:
        self.categories = categories

    def fit(self, frame: pd.DataFrame, y: Any = None) -> "ClosedOneHot":
        if frame.shape[1] != len(self.categories):
            raise ValueError(f"{frame.shape[1]} columns for {len(self.categories)} category sets")
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.categories_ = [list(values) for values in self.categories]
        return self


class FixedImputer(OneToOneFeatureMixin, TransformerMixin, BaseEstimator):
    """Numbers with each column's nulls set to a value given up front (a median merged across partitions);
    `fit` reads no value."""

    def __init__(self, values: list[float]) -> None:
        self.values = values

    def fit(self, frame: pd.DataFrame, y: Any = None) -> "FixedImputer":
        if frame.shape[1] != len(self.values):
            raise ValueError(f"{frame.shape[1]} columns for {len(self.values)} fill values")
        self.feature_names_in_ = np.asarray(frame.columns, dtype=object)
        self.n_features_in_ = frame.shape[1]
        return self

    def transform(self, frame: pd.DataFrame) -> np.ndarray:
        values = frame[list(self.feature_names_in_)].to_numpy(dtype="float64", na_value=np.nan)
        return np.where(np.isnan(values), np.asarray(self.values, dtype="float64"), values)


def build_preprocessor(contract: DataContract, family: Family) -> ColumnTransformer:
    """Impute, scale (linear models only) and one-hot encode, from the contract's column kinds.

    Histogram gradient boosting takes no sparse input, so its features come out dense. A
    differentially private family learns nothing from the data here: its bounds and categories
    are the contract's (tasks/model/privacy.py).
    """
    if family in PRIVATE_FAMILIES:
        return bounded_preprocessor(private_inputs(contract))
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


def merged_preprocessor(fill: dict[str, float], categories: dict[str, list[Value]]) -> ColumnTransformer:
    """Impute and one-hot encode with statistics merged across partitions (tree models: nothing is scaled)."""
    return ColumnTransformer(
        [
            ("numeric", FixedImputer(list(fill.values())), list(fill)),
            ("categorical", ClosedOneHot(list(categories.values())), list(categories)),
        ],
        remainder="drop",
    )


def bounded_preprocessor(inputs: PrivateInputs) -> ColumnTransformer:
    """Numbers clipped and scaled by their bounds, categories one-hot from their closed sets; dense output
    (diffprivlib's linear regression takes no sparse input)."""
    lower = [low for low, _ in inputs.numeric.values()]
    upper = [high for _, high in inputs.numeric.values()]
    return ColumnTransformer(
        [
            ("numeric", BoundedScaler(lower, upper), list(inputs.numeric)),
            ("categorical", ClosedOneHot(list(inputs.categories.values())), list(inputs.categories)),
        ],
        remainder="drop",
        sparse_threshold=0.0,
    )


def input_blocks(preprocessor: ColumnTransformer) -> dict[str, slice]:
    """The output columns each input column becomes, in a fitted preprocessor from `build_preprocessor`.

    Every step here works column by column (impute, scale, one-hot), so each input column owns one
    contiguous block of outputs and shuffling that block's rows is shuffling the input column.
    """
    blocks: dict[str, slice] = {}
    for name, transformer, columns in preprocessor.transformers_:
        if name == "remainder" or not len(columns):
            continue
        start = preprocessor.output_indices_[name].start
        widths = (
            [len(c) + 2 for c in transformer.categories_] if isinstance(transformer, OneHotTop) else [1] * len(columns)
        )
        for column, width in zip(columns, widths, strict=True):
            blocks[column] = slice(start, start + width)
            start += width
    return blocks
