"""The preprocessing that travels inside every model: impute, scale (linear models) and one-hot encode."""

from typing import Any

import numpy as np
import pandas as pd
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler

from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.model.families import Family

MAX_ONE_HOT = 50
"""Categories beyond the most frequent this many share one `<other>` column."""


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
