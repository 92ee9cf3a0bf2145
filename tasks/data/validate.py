"""Validate: hold a dataset to its data contract with a great-expectations suite.

One suite checks both what the contract promises (a broken promise fails the run) and what the
training data showed (values outside it are quality signals, logged as warnings).
"""

import logging

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.core import ExpectationValidationResult
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import ValidationFailed
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import ColumnContract, DataContract, column_kind, require_columns
from mlpipe.tasks.datasets import DatasetRef, read_snapshot

SIGNAL_SHARE = 0.01
"""A column is reported when more than this share of its values lies outside what training showed."""
OBSERVED = "observed"
"""The `meta` key marking an expectation built from observations: reported, never enforced."""


class ContractCheck(BaseModel):
    """Broken promises (the data is refused) and quality signals (the data is used, and the finding reported)."""

    failures: list[str]
    signals: list[str]


def validate(dataset: DatasetRef, contract: DataContract, store: Datastore) -> DatasetRef:
    """Return `dataset` unchanged if it keeps `contract`; values outside what training showed are only logged.

    Raises:
        ValidationFailed: naming the data, the contract file (if any), every column that breaks
            a promise, and how.
    """
    frame = read_snapshot(dataset, store)
    check = check_frame(frame, contract, dataset.source)
    if check.failures:
        declared = f" (contract file {contract.declared_in})" if contract.declared_in else ""
        raise ValidationFailed(
            f"{dataset.source}: {len(check.failures)} expectation(s){declared} failed: " + "; ".join(check.failures)
        )
    log = _run_logger()
    for signal in check.signals:
        log.warning("%s: unlike the training data: %s", dataset.source, signal)
    return dataset


def check_frame(frame: pd.DataFrame, contract: DataContract, source: str) -> ContractCheck:
    """Every broken promise and every quality signal, as `column 'x': <expectation> … failed (…)` lines."""
    require_columns(frame, [c.name for c in contract.columns], source)
    kind_failures = {c.name: _kind_failure(frame[c.name], c) for c in contract.columns}
    well_typed = [c for c in contract.columns if kind_failures[c.name] is None]
    failed = _run_suite(frame, well_typed)
    return ContractCheck(
        failures=[f for f in kind_failures.values() if f] + [_describe(r) for r in failed if not _observed(r)],
        signals=[_describe(r) for r in failed if _observed(r)],
    )


def _run_logger() -> logging.Logger | logging.LoggerAdapter[logging.Logger]:
    """The task run's logger (its lines show in the Prefect UI), or this module's outside a run."""
    from prefect.exceptions import MissingContextError
    from prefect.logging import get_run_logger

    try:
        return get_run_logger()
    except MissingContextError:
        return logging.getLogger(__name__)


def _kind_failure(series: pd.Series, column: ColumnContract) -> str | None:
    # Checked here rather than by ExpectColumnValuesToBeInTypeList: great-expectations 1.24
    # does not recognise pandas 3's `str` dtype under any type name.
    if series.isna().all():
        return f"column '{column.name}': entirely null"
    actual = column_kind(series)
    if actual != column.kind:
        return f"column '{column.name}': expected {column.kind}, got dtype {series.dtype}"
    return None


def _run_suite(frame: pd.DataFrame, columns: list[ColumnContract]) -> list[ExpectationValidationResult]:
    """The results of the expectations `frame` does not meet, with their unexpected values."""
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("mlpipe")
        .add_dataframe_asset("dataset")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    expectations = [e for column in columns for e in [*expectations_for(column), *observations_for(column)]]
    # Pass/fail first: computing the unexpected-value summaries for every expectation costs
    # 2-3x as much on large data, and they are only needed for the ones that failed.
    verdicts = batch.validate(
        gx.ExpectationSuite(name="contract", expectations=expectations), result_format="BOOLEAN_ONLY"
    )
    failed = [_config(verdict).to_domain_obj() for verdict in verdicts.results if not verdict.success]
    if not failed:
        return []
    details = batch.validate(gx.ExpectationSuite(name="failed", expectations=failed), result_format="SUMMARY")
    return list(details.results)


def expectations_for(column: ColumnContract) -> list[gxe.Expectation]:
    """The great-expectations form of one column's promises: nulls, declared bounds, a closed set."""
    found: list[gxe.Expectation] = [
        gxe.ExpectColumnValuesToNotBeNull(column=column.name, mostly=1.0 - column.max_null_fraction)
    ]
    if column.minimum is not None or column.maximum is not None:
        found.append(
            gxe.ExpectColumnValuesToBeBetween(column=column.name, min_value=column.minimum, max_value=column.maximum)
        )
    if column.allowed_values is not None:
        found.append(gxe.ExpectColumnValuesToBeInSet(column=column.name, value_set=column.allowed_values))
    return found


def observations_for(column: ColumnContract) -> list[gxe.Expectation]:
    """Expectations from what training showed (its range, its categories), marked as observations."""
    seen = column.observed
    if seen is None:
        return []
    mostly, meta = 1.0 - SIGNAL_SHARE, {OBSERVED: True}
    found: list[gxe.Expectation] = []
    if seen.minimum is not None or seen.maximum is not None:
        found.append(
            gxe.ExpectColumnValuesToBeBetween(
                column=column.name, min_value=seen.minimum, max_value=seen.maximum, mostly=mostly, meta=meta
            )
        )
    if seen.values is not None:
        found.append(
            gxe.ExpectColumnValuesToBeInSet(column=column.name, value_set=seen.values, mostly=mostly, meta=meta)
        )
    return found


def _observed(result: ExpectationValidationResult) -> bool:
    return bool((_config(result).meta or {}).get(OBSERVED))


def _config(result: ExpectationValidationResult) -> ExpectationConfiguration:
    if result.expectation_config is None:
        raise RuntimeError("great-expectations returned a result without its expectation")
    return result.expectation_config


def _describe(result: ExpectationValidationResult) -> str:
    config = _config(result)
    column = config.kwargs.get("column")
    details = result.result or {}
    if result.exception_info and result.exception_info.get("raised_exception"):
        return f"column '{column}': {config.type} could not run ({result.exception_info.get('exception_message')})"
    rule = {k: v for k, v in config.kwargs.items() if k in ("min_value", "max_value", "value_set", "mostly")}
    unexpected = details.get("unexpected_percent") or 0.0
    examples = (details.get("partial_unexpected_list") or [])[:3]
    return f"column '{column}': {config.type} {rule} failed ({unexpected:.1f}% unexpected, e.g. {examples})"


validate_task = pipeline_task(validate)
