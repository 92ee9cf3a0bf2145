"""Validate: hold a dataset to its data contract with a great-expectations suite.

One suite checks both what the contract promises (a broken promise fails the run) and what the
training data showed (values outside it are quality signals, logged as warnings). The data is
read a row group at a time and the suite's counts add up, so it is never held whole.
"""

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import ValidationFailed
from mlpipe.tasks.caching import pipeline_task, run_logger
from mlpipe.tasks.contract import ColumnContract, DataContract, column_kind, require_columns
from mlpipe.tasks.datasets import DatasetRef, row_groups

if TYPE_CHECKING:  # great-expectations takes seconds to import: only the validation step loads it
    import great_expectations.expectations as gxe
    from great_expectations.core import ExpectationValidationResult
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

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
    frames = (group.to_pandas() for group in row_groups(dataset, store))
    check = check_frames(frames, contract, dataset.source)
    if check.failures:
        declared = f" (contract file {contract.declared_in})" if contract.declared_in else ""
        raise ValidationFailed(
            f"{dataset.source}: {len(check.failures)} expectation(s){declared} failed: " + "; ".join(check.failures)
        )
    log = run_logger(__name__)
    for signal in check.signals:
        log.warning("%s: unlike the training data: %s", dataset.source, signal)
    return dataset


def check_frame(frame: pd.DataFrame, contract: DataContract, source: str) -> ContractCheck:
    """Every broken promise and every quality signal, as `column 'x': <expectation> … failed (…)` lines."""
    return check_frames([frame], contract, source)


def check_frames(frames: Iterable[pd.DataFrame], contract: DataContract, source: str) -> ContractCheck:
    """Every broken promise and quality signal of the rows of all `frames` together.

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
        suite.run(frame, [c for c in contract.columns if kinds.get(c.name) is None])
    kind_failures = [kinds.get(c.name, f"column '{c.name}': entirely null") for c in contract.columns]
    well_typed = {c.name for c in contract.columns if kinds.get(c.name, "") is None}
    return ContractCheck(
        failures=[f for f in kind_failures if f] + suite.failures(well_typed, observed=False),
        signals=suite.failures(well_typed, observed=True),
    )


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

    config: "ExpectationConfiguration"
    elements: int = 0
    missing: int = 0
    unexpected: int = 0
    examples: list[Any] = field(default_factory=list)
    error: str | None = None

    def add(self, result: "ExpectationValidationResult") -> None:
        if result.exception_info and result.exception_info.get("raised_exception"):
            self.error = self.error or str(result.exception_info.get("exception_message"))
        details = result.result or {}
        self.elements += details.get("element_count") or 0
        self.missing += details.get("missing_count") or 0
        self.unexpected += details.get("unexpected_count") or 0
        self.examples.extend((details.get("partial_unexpected_list") or [])[: 3 - len(self.examples)])

    @property
    def observed(self) -> bool:
        return bool((self.config.meta or {}).get(OBSERVED))

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
        import great_expectations as gx
        from great_expectations.data_context.types.base import ProgressBarsConfig

        context = gx.get_context(mode="ephemeral")
        context.variables.progress_bars = ProgressBarsConfig(globally=False)
        self._batches = (
            context.data_sources.add_pandas("mlpipe")
            .add_dataframe_asset("dataset")
            .add_batch_definition_whole_dataframe("all")
        )
        self.tallies: dict[tuple[str, str, bool], _Tally] = {}

    def run(self, frame: pd.DataFrame, columns: list[ColumnContract]) -> None:
        import great_expectations as gx

        expectations = [e for column in columns for e in [*expectations_for(column), *observations_for(column)]]
        batch = self._batches.get_batch(batch_parameters={"dataframe": frame})
        # BASIC gives the counts that add up over frames (and a few examples) at little more than pass/fail's cost.
        verdicts = batch.validate(
            gx.ExpectationSuite(name="contract", expectations=expectations), result_format="BASIC"
        )
        for result in verdicts.results:
            config = _config(result)
            tally = _Tally(config)
            key = (str(config.kwargs.get("column")), config.type, tally.observed)
            self.tallies.setdefault(key, tally).add(result)

    def failures(self, columns: set[str], observed: bool) -> list[str]:
        """The promises (or, with `observed`, the observations) of `columns` that fail on all frames together."""
        return [
            t.describe()
            for (column, _, kind), t in self.tallies.items()
            if column in columns and kind == observed and not t.success
        ]


def expectations_for(column: ColumnContract) -> list["gxe.Expectation"]:
    """The great-expectations form of one column's promises: nulls, declared bounds, a closed set."""
    import great_expectations.expectations as gxe

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


def observations_for(column: ColumnContract) -> list["gxe.Expectation"]:
    """Expectations from what training showed (its range, its categories), marked as observations."""
    import great_expectations.expectations as gxe

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


def _config(result: "ExpectationValidationResult") -> "ExpectationConfiguration":
    if result.expectation_config is None:
        raise RuntimeError("great-expectations returned a result without its expectation")
    return result.expectation_config


validate_task = pipeline_task(validate)
