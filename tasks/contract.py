"""Data contracts: which columns a model needs, of what kind, with what values and nulls.

A contract is inferred from the first training data (tasks/data/contract_inference.py) and
stored with the model, so a later retraining (or a user-supplied contract file) holds new data
to the same promises.

A contract separates what must hold from what was merely seen. Columns, kinds, null limits,
the target's classes and the bounds and closed category sets a person declared in a contract
file are promises: data that breaks one fails the run. The value ranges and category sets the
training data happened to show are observations: data outside them is reported as a quality
signal (and seen by the drift check), never refused, because drifted data is exactly what a
retraining must be able to learn from.
"""

import json
from pathlib import Path
from typing import Literal

import pandas as pd
from pandas.api import types as ptypes

from mlpipe.errors import ConfigError, DataError, load_yaml, validated
from mlpipe.validation import Strict

ColumnKind = Literal["numeric", "string", "boolean", "datetime"]
TaskType = Literal["classification", "regression"]


Value = bool | int | float | str


class ObservedValues(Strict):
    """What the training data showed in one column: reported when new data leaves it, never enforced."""

    minimum: float | None = None
    maximum: float | None = None
    values: list[Value] | None = None
    """The categories seen, for columns with few enough of them."""


class ColumnContract(Strict):
    """What one column promises (kind, nulls, declared bounds and closed sets) and what training showed."""

    name: str
    kind: ColumnKind
    max_null_fraction: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    allowed_values: list[Value] | None = None
    """A closed set: any other value breaks the contract (declared in a contract file, or the target's classes)."""
    observed: ObservedValues | None = None


class DataContract(Strict):
    """The promises a training or scoring dataset must keep."""

    target: str
    task: TaskType
    time_column: str | None = None
    columns: list[ColumnContract]
    declared_in: str | None = None
    """The contract file its promises come from (set when loaded), named in validation errors."""

    @property
    def features(self) -> list[ColumnContract]:
        """Model inputs: every contracted column except the target and the time column."""
        return [c for c in self.columns if c.name not in (self.target, self.time_column)]

    @property
    def feature_names(self) -> list[str]:
        return [c.name for c in self.features]

    def column(self, name: str) -> ColumnContract:
        """The promises about column `name`."""
        for column in self.columns:
            if column.name == name:
                return column
        raise ConfigError(f"the data contract has no column '{name}'")

    @classmethod
    def from_file(cls, path: str | Path) -> "DataContract":
        """Load a user-written contract (JSON or YAML)."""
        path = Path(path)
        contract = validated(cls, load_yaml(path, "contract file"), f"contract file {path}")
        return contract.model_copy(update={"declared_in": str(path)})

    def to_json(self) -> str:
        return json.dumps(self.model_dump(), indent=2)


def column_kind(series: pd.Series) -> ColumnKind | None:
    """The contract kind of a pandas column, or None for kinds a model cannot take."""
    if ptypes.is_bool_dtype(series):
        return "boolean"
    if ptypes.is_numeric_dtype(series):
        return "numeric"
    if ptypes.is_datetime64_any_dtype(series):
        return "datetime"
    if ptypes.is_string_dtype(series) or isinstance(series.dtype, pd.CategoricalDtype):
        return "string"
    if ptypes.is_object_dtype(series):  # e.g. booleans with nulls, read back as Python objects
        inferred = ptypes.infer_dtype(series, skipna=True)
        kinds: dict[str, ColumnKind] = {"boolean": "boolean", "string": "string"}
        return kinds.get(inferred)
    return None


def require_columns(frame: pd.DataFrame, required: list[str], source: str) -> None:
    """Fail with the names of the missing columns and those that are there."""
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise DataError(f"{source}: required column(s) {missing} missing; columns present: {list(frame.columns)}")
