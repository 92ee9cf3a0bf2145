"""Contract inference: the promises a first training dataset makes, and the contract new data is held to."""

import pandas as pd
from pandas.api import types as ptypes
from prefect.cache_policies import NO_CACHE

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
from mlpipe.tasks.datasets import DatasetRef, read_snapshot

MAX_CATEGORIES = 50
"""String columns with at most this many distinct values have their categories observed."""
MAX_CLASSES = 20
"""An integer target with at most this many distinct values is taken as class labels."""
NULL_SLACK = 0.10
"""New data may have this much larger a null fraction than the training data had."""


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
    """Kind and null limit (promises), the target's classes (a model's outputs), and the values seen."""
    nulls = float(series.isna().mean())
    if nulls == 1.0:
        raise DataError(f"column '{series.name}' is entirely null")
    labels = is_target and task == "classification"
    distinct = series.dropna().unique()
    observed = ObservedValues()
    if kind == "numeric" and not labels:
        observed.minimum, observed.maximum = float(series.min()), float(series.max())
    if kind == "string" and len(distinct) <= MAX_CATEGORIES and not labels:
        observed.values = sorted(distinct.tolist(), key=str)
    return ColumnContract(
        name=str(series.name),
        kind=kind,
        max_null_fraction=0.0 if is_target else min(0.99, nulls + NULL_SLACK),
        allowed_values=sorted(distinct.tolist(), key=str) if labels else None,
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
        contract = champion or infer_contract(
            read_snapshot(dataset, store),
            target,
            task,
            time_column,
            [*(exclude or []), *(sensitive or [])],
            dataset.source,
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
