"""Validate: hold a dataset to its data contract with a great-expectations suite."""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

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
from mlpipe.tasks.datasets import DatasetRef, row_groups

RARE_SHARE = 0.05
"""Share of values allowed outside known categories: new categories are drift, not bad data."""


def validate(dataset: DatasetRef, contract: DataContract, store: Datastore) -> DatasetRef:
    """Return `dataset` unchanged if it keeps `contract`; read a row group at a time, never held whole.

    Raises:
        ValidationFailed: naming every column that breaks an expectation, and how.
    """
    frames = (group.to_pandas() for group in row_groups(dataset, store))
    failures = check_frames(frames, contract, dataset.source)
    if failures:
        raise ValidationFailed(f"{dataset.source}: {len(failures)} expectation(s) failed: " + "; ".join(failures))
    return dataset


def check_frame(frame: pd.DataFrame, contract: DataContract, source: str) -> list[str]:
    """Every broken promise, as `column 'x': expected …, got …` lines (empty when valid)."""
    return check_frames([frame], contract, source)


def check_frames(frames: Iterable[pd.DataFrame], contract: DataContract, source: str) -> list[str]:
    """Every broken promise of the rows of all `frames` together (empty when valid).

    Each frame is checked by the same suite and the counts add up (values, missing values and
    unexpected values per expectation), so verdicts and shares are those of the whole data: a
    `mostly` holds or fails on the total, not batch by batch. A column's kind is judged on the first
    frame where it has values.
    """
    kinds: dict[str, str | None] = {}
    suite = _Suite()
    for index, frame in enumerate(frames):
        if index == 0:
            require_columns(frame, [c.name for c in contract.columns], source)
        for column in contract.columns:
            if column.name not in kinds and not frame[column.name].isna().all():
                kinds[column.name] = _kind_failure(frame[column.name], column)
        suite.run(frame, contract.target, [c for c in contract.columns if kinds.get(c.name) is None])
    kind_failures = [kinds.get(c.name, f"column '{c.name}': entirely null") for c in contract.columns]
    well_typed = {c.name for c in contract.columns if kinds.get(c.name, "") is None}
    return [f for f in kind_failures if f] + suite.failures(well_typed)


def _kind_failure(series: pd.Series, column: ColumnContract) -> str | None:
    # Checked here rather than by ExpectColumnValuesToBeInTypeList: great-expectations 1.24
    # does not recognise pandas 3's `str` dtype under any type name.
    actual = column_kind(series)
    if actual != column.kind:
        return f"column '{column.name}': expected {column.kind}, got dtype {series.dtype}"
    return None


@dataclass
class _Tally:
    """One expectation's counts over the frames seen so far."""

    config: ExpectationConfiguration
    elements: int = 0
    missing: int = 0
    unexpected: int = 0
    examples: list[Any] = field(default_factory=list)
    error: str | None = None

    def add(self, result: ExpectationValidationResult) -> None:
        if result.exception_info and result.exception_info.get("raised_exception"):
            self.error = self.error or str(result.exception_info.get("exception_message"))
        details = result.result or {}
        self.elements += details.get("element_count") or 0
        self.missing += details.get("missing_count") or 0
        self.unexpected += details.get("unexpected_count") or 0
        self.examples.extend((details.get("partial_unexpected_list") or [])[: 3 - len(self.examples)])

    @property
    def unexpected_percent(self) -> float:
        present = self.elements - self.missing
        return 100.0 * self.unexpected / present if present else 0.0

    @property
    def success(self) -> bool:
        mostly = self.config.kwargs.get("mostly", 1.0)
        return self.error is None and 1.0 - self.unexpected_percent / 100.0 >= mostly

    def describe(self) -> str:
        column = self.config.kwargs.get("column")
        if self.error is not None:
            return f"column '{column}': {self.config.type} could not run ({self.error})"
        rule = {k: v for k, v in self.config.kwargs.items() if k in ("min_value", "max_value", "value_set", "mostly")}
        return (
            f"column '{column}': {self.config.type} {rule} failed "
            f"({self.unexpected_percent:.1f}% unexpected, e.g. {self.examples})"
        )


class _Suite:
    """The contract's expectations, run frame by frame in one great-expectations context, counts added up."""

    def __init__(self) -> None:
        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._batches = (
            context.data_sources.add_pandas("mlpipe")
            .add_dataframe_asset("dataset")
            .add_batch_definition_whole_dataframe("all")
        )
        self.tallies: dict[tuple[str, str], _Tally] = {}

    def run(self, frame: pd.DataFrame, target: str, columns: list[ColumnContract]) -> None:
        expectations = [
            expectation
            for column in columns
            for expectation in expectations_for(column, rare_share=0.0 if column.name == target else RARE_SHARE)
        ]
        batch = self._batches.get_batch(batch_parameters={"dataframe": frame})
        # BASIC gives the counts that add up over frames (and a few examples) at little more than pass/fail's cost.
        verdicts = batch.validate(
            gx.ExpectationSuite(name="contract", expectations=expectations), result_format="BASIC"
        )
        for result in verdicts.results:
            config = _config(result)
            key = (str(config.kwargs.get("column")), config.type)
            self.tallies.setdefault(key, _Tally(config)).add(result)

    def failures(self, columns: set[str]) -> list[str]:
        """The expectations of `columns` that fail on all frames together."""
        return [t.describe() for (column, _), t in self.tallies.items() if column in columns and not t.success]


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


validate_task = pipeline_task(validate)
