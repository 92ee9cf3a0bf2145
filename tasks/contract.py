"""Data contracts: which columns a model needs, of what kind, with what values and nulls.

A contract is inferred from the first training data and stored with the model, so a later
retraining (or a user-supplied contract file) holds new data to the same promises.
"""

import json
from pathlib import Path
from typing import Literal

import pandas as pd
from pandas.api import types as ptypes
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from blocks.datastore import Datastore
from blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError, DataError, load_yaml, validated
from tasks.caching import pipeline_task
from tasks.datasets import DatasetRef, read_snapshot

ColumnKind = Literal["numeric", "string", "boolean", "datetime"]
TaskType = Literal["classification", "regression"]

MAX_CATEGORIES = 50
"""String columns with at most this many distinct values get an allowed-value set."""
MAX_CLASSES = 20
"""An integer target with at most this many distinct values is taken as class labels."""
NULL_SLACK = 0.10
"""New data may have this much larger a null fraction than the training data had."""


class ColumnContract(BaseModel):
    """What one column promises."""

    name: str
    kind: ColumnKind
    max_null_fraction: float = 0.0
    minimum: float | None = None
    maximum: float | None = None
    allowed_values: list[bool | int | float | str] | None = None


class DataContract(BaseModel):
    """The promises a training or scoring dataset must keep."""

    target: str
    task: TaskType
    time_column: str | None = None
    columns: list[ColumnContract]

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
        return validated(cls, load_yaml(path, "contract file"), f"contract file {path}")

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


def infer_task(target: pd.Series) -> TaskType:
    """Classification for labels (strings, booleans, few distinct integers), else regression."""
    kind = column_kind(target)
    if kind in ("string", "boolean"):
        return "classification"
    if kind == "numeric" and ptypes.is_integer_dtype(target) and target.nunique() <= MAX_CLASSES:
        return "classification"
    if kind == "numeric":
        return "regression"
    raise DataError(f"target column '{target.name}' has dtype {target.dtype}: expected numbers, strings or booleans")


def infer_contract(
    frame: pd.DataFrame,
    target: str,
    task: TaskType | None = None,
    time_column: str | None = None,
    exclude: list[str] | None = None,
    source: str = "dataset",
) -> DataContract:
    """Infer the contract from training data; features are all other columns a model can take."""
    require_columns(frame, [target, *([time_column] if time_column else [])], source)
    task = task or infer_task(frame[target])
    skip = set(exclude or [])
    columns = []
    for name in frame.columns:
        if name in skip:
            continue
        series = frame[name]
        kind = column_kind(series)
        if kind is None or (kind == "datetime" and name != time_column):
            continue
        columns.append(_infer_column(series, kind, is_target=name == target, task=task))
    if len(columns) <= 1 + (time_column is not None):
        raise DataError(f"{source}: no usable feature columns besides target '{target}'")
    return DataContract(target=target, task=task, time_column=time_column, columns=columns)


def _infer_column(series: pd.Series, kind: ColumnKind, is_target: bool, task: TaskType) -> ColumnContract:
    nulls = float(series.isna().mean())
    if nulls == 1.0:
        raise DataError(f"column '{series.name}' is entirely null")
    contract = ColumnContract(
        name=str(series.name),
        kind=kind,
        max_null_fraction=0.0 if is_target else min(0.99, nulls + NULL_SLACK),
    )
    if kind == "numeric" and not (is_target and task == "classification"):
        low, high = float(series.min()), float(series.max())
        span = max(high - low, abs(high), 1.0)
        contract.minimum = 0.0 if low >= 0 else low - span
        contract.maximum = high + span
    distinct = series.dropna().unique()
    labels = is_target and task == "classification"
    if (kind == "string" and len(distinct) <= MAX_CATEGORIES) or labels:
        contract.allowed_values = sorted(distinct.tolist(), key=str)
    return contract


def require_columns(frame: pd.DataFrame, required: list[str], source: str) -> None:
    """Fail with the names of the missing columns and those that are there."""
    missing = [name for name in required if name not in frame.columns]
    if missing:
        raise DataError(f"{source}: required column(s) {missing} missing; columns present: {list(frame.columns)}")


def resolve_contract(
    dataset: DatasetRef,
    target: str,
    model_name: str,
    tracking: MlflowConnection,
    store: Datastore,
    task: TaskType | None = None,
    time_column: str | None = None,
    exclude: list[str] | None = None,
    contract_file: str | None = None,
) -> DataContract:
    """The contract new data is held to: the user's file, else the champion's, else inferred.

    Using the champion's contract is what makes a retraining on data that lost a column fail
    loudly instead of quietly training a different model.
    """
    if contract_file:
        contract = DataContract.from_file(contract_file)
    else:
        contract = champion_contract(model_name, tracking) or infer_contract(
            read_snapshot(dataset, store), target, task, time_column, exclude, dataset.source
        )
    if contract.target != target:
        raise ConfigError(
            f"target '{target}' differs from the contract's target '{contract.target}' (model {model_name})"
        )
    if task and contract.task != task:
        raise ConfigError(f"task '{task}' differs from the contract's task '{contract.task}' (model {model_name})")
    if time_column and contract.time_column != time_column:
        raise ConfigError(
            f"time column '{time_column}' differs from the contract's '{contract.time_column}' (model {model_name}); "
            "pass a contract file to change it"
        )
    kept = sorted(set(exclude or []) & set(contract.feature_names))
    if kept:
        raise ConfigError(
            f"excluded column(s) {kept} are features in the contract of model {model_name}; "
            "pass a contract file to change the features"
        )
    return contract


def champion_contract(model_name: str, tracking: MlflowConnection) -> DataContract | None:
    """The contract stored with the current champion, if there is one."""
    import mlflow

    from tasks.gate import find_champion
    from tasks.train import CONTRACT_ARTIFACT

    champion = find_champion(model_name, tracking)
    if champion is None:
        return None
    with tracking.session():
        text = mlflow.artifacts.load_text(f"runs:/{champion.run_id}/{CONTRACT_ARTIFACT}")
    return DataContract.model_validate_json(text)


contract_task = pipeline_task(resolve_contract, cache_policy=NO_CACHE)
