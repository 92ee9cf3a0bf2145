"""Validate: hold a dataset to its data contract with a great-expectations suite."""

import great_expectations as gx
import great_expectations.expectations as gxe
import pandas as pd
from great_expectations.core import ExpectationValidationResult
from great_expectations.data_context.types.base import ProgressBarsConfig
from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import ValidationFailed
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import ColumnContract, DataContract, column_kind, require_columns
from mlpipe.tasks.datasets import DatasetRef, read_snapshot

RARE_SHARE = 0.05
"""Share of values allowed outside known categories: new categories are drift, not bad data."""


def validate(dataset: DatasetRef, contract: DataContract, store: Datastore) -> DatasetRef:
    """Return `dataset` unchanged if it keeps `contract`.

    Raises:
        ValidationFailed: naming every column that breaks an expectation, and how.
    """
    frame = read_snapshot(dataset, store)
    failures = check_frame(frame, contract, dataset.source)
    if failures:
        raise ValidationFailed(f"{dataset.source}: {len(failures)} expectation(s) failed: " + "; ".join(failures))
    return dataset


def check_frame(frame: pd.DataFrame, contract: DataContract, source: str) -> list[str]:
    """Every broken promise, as `column 'x': expected …, got …` lines (empty when valid)."""
    require_columns(frame, [c.name for c in contract.columns], source)
    kind_failures = {c.name: _kind_failure(frame[c.name], c) for c in contract.columns}
    well_typed = [c for c in contract.columns if kind_failures[c.name] is None]
    return [f for f in kind_failures.values() if f] + _run_suite(frame, contract.target, well_typed)


def _kind_failure(series: pd.Series, column: ColumnContract) -> str | None:
    # Checked here rather than by ExpectColumnValuesToBeInTypeList: great-expectations 1.24
    # does not recognise pandas 3's `str` dtype under any type name.
    if series.isna().all():
        return f"column '{column.name}': entirely null"
    actual = column_kind(series)
    if actual != column.kind:
        return f"column '{column.name}': expected {column.kind}, got dtype {series.dtype}"
    return None


def _run_suite(frame: pd.DataFrame, target: str, columns: list[ColumnContract]) -> list[str]:
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    batch = (
        context.data_sources.add_pandas("mlpipe")
        .add_dataframe_asset("dataset")
        .add_batch_definition_whole_dataframe("all")
        .get_batch(batch_parameters={"dataframe": frame})
    )
    expectations = [
        expectation
        for column in columns
        for expectation in expectations_for(column, rare_share=0.0 if column.name == target else RARE_SHARE)
    ]
    # Pass/fail first: computing the unexpected-value summaries for every expectation costs
    # 2-3x as much on large data, and they are only needed for the ones that failed.
    verdicts = batch.validate(
        gx.ExpectationSuite(name="contract", expectations=expectations), result_format="BOOLEAN_ONLY"
    )
    failed = [_config(verdict).to_domain_obj() for verdict in verdicts.results if not verdict.success]
    if not failed:
        return []
    details = batch.validate(gx.ExpectationSuite(name="failed", expectations=failed), result_format="SUMMARY")
    return [_describe(r) for r in details.results]


def expectations_for(column: ColumnContract, rare_share: float) -> list[gxe.Expectation]:
    """The great-expectations form of one column's promises."""
    found: list[gxe.Expectation] = [
        gxe.ExpectColumnValuesToNotBeNull(column=column.name, mostly=1.0 - column.max_null_fraction)
    ]
    if column.minimum is not None or column.maximum is not None:
        found.append(
            gxe.ExpectColumnValuesToBeBetween(column=column.name, min_value=column.minimum, max_value=column.maximum)
        )
    if column.allowed_values is not None:
        found.append(
            gxe.ExpectColumnValuesToBeInSet(
                column=column.name, value_set=column.allowed_values, mostly=1.0 - rare_share
            )
        )
    return found


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
