"""Contract inference: the promises a first training dataset makes, and the contract new data is held to."""

import functools
from typing import Any

import pandas as pd
from pandas.api import types as ptypes
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import ConfigError, DataError
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import (
    ColumnContract,
    ColumnKind,
    DataContract,
    ObservedValues,
    TaskType,
    column_kind,
    require_columns,
)
from mlpipe.tasks.data.groups import check_sensitive
from mlpipe.tasks.datasets import DatasetRef, row_groups

MAX_CATEGORIES = 50
"""String columns with at most this many distinct values have their categories observed."""
MAX_CLASSES = 20
"""An integer target with at most this many distinct values is taken as class labels."""
NULL_SLACK = 0.10
"""New data may have this much larger a null fraction than the training data had."""


class ColumnProfile(BaseModel):
    """What inference needs of one column, in counts that add up over row groups and partitions."""

    kind: ColumnKind | None = None
    """From the dtype, or for Python objects from the values of the first rows that have some (None: a kind no
    model takes)."""
    integer: bool = False
    rows: int = 0
    nulls: int = 0
    minimum: float | None = None
    maximum: float | None = None
    distinct: list[Any] | None = []
    """Every distinct value, while there are at most `MAX_CATEGORIES` (all of them for a target); None past that."""

    def plus(self, later: "ColumnProfile", limit: int | None) -> "ColumnProfile":
        distinct = None
        if self.distinct is not None and later.distinct is not None:
            distinct = list(dict.fromkeys([*self.distinct, *later.distinct]))
            distinct = None if limit is not None and len(distinct) > limit else distinct
        known = self.rows > self.nulls or later.rows == later.nulls
        return ColumnProfile(
            kind=self.kind if known else later.kind,
            integer=self.integer if known else later.integer,
            rows=self.rows + later.rows,
            nulls=self.nulls + later.nulls,
            minimum=min((v for v in (self.minimum, later.minimum) if v is not None), default=None),
            maximum=max((v for v in (self.maximum, later.maximum) if v is not None), default=None),
            distinct=distinct,
        )


def profile(frame: pd.DataFrame, target: str) -> dict[str, ColumnProfile]:
    """Each column's profile in `frame` (the target's distinct values all kept)."""
    profiles = {}
    for name in frame.columns:
        series = frame[name]
        kind = column_kind(series)
        limit = None if name == target else MAX_CATEGORIES
        distinct: list[Any] | None = []
        if kind in ("string", "boolean", "numeric"):  # a list only when kept: most numeric columns have too many
            uniques = series.dropna().unique()
            distinct = None if limit is not None and len(uniques) > limit else uniques.tolist()
        numbers = kind == "numeric" and series.notna().any()
        profiles[str(name)] = ColumnProfile(
            kind=kind,
            integer=bool(ptypes.is_integer_dtype(series)),
            rows=len(series),
            nulls=int(series.isna().sum()),
            minimum=float(series.min()) if numbers else None,
            maximum=float(series.max()) if numbers else None,
            distinct=distinct,
        )
    return profiles


def merge_profiles(
    first: dict[str, ColumnProfile], later: dict[str, ColumnProfile], target: str
) -> dict[str, ColumnProfile]:
    return {
        name: column.plus(later[name], None if name == target else MAX_CATEGORIES) for name, column in first.items()
    }


def infer_task(target: pd.Series) -> TaskType:
    """Classification for labels (strings, booleans, few distinct integers), else regression."""
    name = str(target.name)
    return _task_of(profile(target.to_frame(name), name)[name], name, target.dtype)


def _task_of(target: ColumnProfile, name: str, dtype: object) -> TaskType:
    if target.kind in ("string", "boolean"):
        return "classification"
    few = target.distinct is not None and len(target.distinct) <= MAX_CLASSES
    if target.kind == "numeric" and target.integer and few:
        return "classification"
    if target.kind == "numeric":
        return "regression"
    raise DataError(f"target column '{name}' has dtype {dtype}: expected numbers, strings or booleans")


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
    dtypes = {str(name): str(dtype) for name, dtype in frame.dtypes.items()}
    return contract_from(profile(frame, target), dtypes, target, task, time_column, exclude, source)


def infer_dataset_contract(
    dataset: DatasetRef,
    store: Datastore,
    target: str,
    task: TaskType | None = None,
    time_column: str | None = None,
    exclude: list[str] | None = None,
) -> DataContract:
    """`infer_contract` of a whole dataset, read a row group at a time: the same contract, never holding it whole."""
    require_columns(
        pd.DataFrame(columns=list(dataset.columns)), [target, *([time_column] if time_column else [])], dataset.source
    )
    profiles = functools.reduce(
        lambda merged, later: merge_profiles(merged, later, target),
        (profile(group.to_pandas(), target) for group in row_groups(dataset, store)),
    )
    return contract_from(profiles, dataset.columns, target, task, time_column, exclude, dataset.source)


def contract_from(
    profiles: dict[str, ColumnProfile],
    dtypes: dict[str, str],
    target: str,
    task: TaskType | None,
    time_column: str | None,
    exclude: list[str] | None,
    source: str,
) -> DataContract:
    task = task or _task_of(profiles[target], target, dtypes.get(target))
    skip = set(exclude or [])
    columns = []
    for name, column in profiles.items():
        if name in skip:
            continue
        if column.kind is None or (column.kind == "datetime" and name != time_column):
            continue
        if column.rows == column.nulls:
            raise DataError(f"column '{name}' is entirely null")
        columns.append(_infer_column(name, column, is_target=name == target, task=task))
    if len(columns) <= 1 + (time_column is not None):
        raise DataError(f"{source}: no usable feature columns besides target '{target}'")
    return DataContract(target=target, task=task, time_column=time_column, columns=columns)


def _infer_column(name: str, column: ColumnProfile, is_target: bool, task: TaskType) -> ColumnContract:
    """Kind and null limit (promises), the target's classes (a model's outputs), and the values seen."""
    assert column.kind is not None
    nulls = column.nulls / column.rows
    labels = is_target and task == "classification"
    observed = ObservedValues()
    if column.kind == "numeric" and not labels:
        observed.minimum, observed.maximum = column.minimum, column.maximum
    if column.kind == "string" and column.distinct is not None and not labels:
        observed.values = sorted(column.distinct, key=str)
    return ColumnContract(
        name=name,
        kind=column.kind,
        max_null_fraction=0.0 if is_target else min(0.99, nulls + NULL_SLACK),
        allowed_values=sorted(column.distinct or [], key=str) if labels else None,
        observed=observed if observed != ObservedValues() else None,
    )


def resolve_contract(
    dataset: DatasetRef,
    target: str,
    model_name: str,
    store: Datastore,
    task: TaskType | None = None,
    time_column: str | None = None,
    exclude: list[str] | None = None,
    contract_file: str | None = None,
    champion: DataContract | None = None,
    sensitive: list[str] | None = None,
) -> DataContract:
    """The contract new data is held to: the user's file, else the champion's (`champion`), else inferred.

    Using the champion's contract is what makes a retraining on data that lost a column fail
    loudly instead of quietly training a different model. `sensitive` columns (a fairness
    report's groups) are left out of an inferred contract like `exclude`; a contract that lists
    one as a feature keeps it.

    Raises:
        ConfigError: an excluded or sensitive column the data does not have (a typo would exclude
            nothing), a sensitive column with too many values, or a target, task or time column
            that differs from the contract's.
    """
    absent = sorted(set(exclude or []) - set(dataset.columns))
    if absent:
        raise ConfigError(
            f"{dataset.source}: excluded column(s) {absent} are not in the data; "
            f"columns present: {list(dataset.columns)}"
        )
    if target in (sensitive or []):
        raise ConfigError(f"the target '{target}' cannot be a sensitive column: groups are compared on predicting it")
    check_sensitive(dataset, sensitive or [], store)
    if contract_file:
        contract = DataContract.from_file(contract_file)
    else:
        contract = champion or infer_dataset_contract(
            dataset, store, target, task, time_column, [*(exclude or []), *(sensitive or [])]
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


contract_task = pipeline_task(resolve_contract, cache_policy=NO_CACHE)
