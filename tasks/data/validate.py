"""Validate: hold a dataset to its data contract with a great-expectations suite.

One suite checks both what the contract promises (a broken promise fails the run) and what the
training data showed (values outside it are quality signals, logged as warnings). The data is
read a row group at a time and the suite's counts add up, so it is never held whole.
"""

import functools
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import pandas as pd
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import ValidationFailed
from mlpipe.tasks.caching import pipeline_task, run_logger
from mlpipe.tasks.contract import ColumnContract, DataContract, column_kind, require_columns
from mlpipe.tasks.datasets import DatasetRef, partitions, row_groups
from mlpipe.workspace import available_cores

if TYPE_CHECKING:  # great-expectations takes seconds to import: only the validation step loads it
    import great_expectations.expectations as gxe
    from great_expectations.core import ExpectationValidationResult
    from great_expectations.core.batch_definition import BatchDefinition
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

SIGNAL_SHARE = 0.01
"""A column is reported when more than this share of its values lies outside what training showed."""
OBSERVED = "observed"
"""The `meta` key marking an expectation built from observations: reported, never enforced."""
COLUMNWISE_ROWS = 250_000
"""Frames of this many rows are checked column by column, in threads; below it, a validator for each column costs
more than the copies and the second core save (× 30 columns on 2 cores, column by column against at once: 0.33 s
and 0.29 s at 120k rows, 0.41 s and 0.44 s at 300k, 0.50 s and 0.55 s at 500k)."""


class ContractCheck(BaseModel):
    """Broken promises (the data is refused) and quality signals (the data is used, and the finding reported)."""

    failures: list[str]
    signals: list[str]


class Tally(BaseModel):
    """One expectation's counts over the rows seen so far: they add up across row groups and partitions."""

    column: str
    expectation: str
    rule: dict[str, Any]
    observed: bool
    elements: int = 0
    missing: int = 0
    unexpected: int = 0
    examples: list[Any] = []
    error: str | None = None
    parts: list[str] = []
    """The partitions where it fails on their own rows (or could not run)."""

    def plus(self, other: "Tally") -> "Tally":
        return self.model_copy(
            update={
                "elements": self.elements + other.elements,
                "missing": self.missing + other.missing,
                "unexpected": self.unexpected + other.unexpected,
                "examples": [*self.examples, *other.examples][:3],
                "error": self.error or other.error,
                "parts": [*self.parts, *(p for p in other.parts if p not in self.parts)],
            }
        )

    @property
    def unexpected_percent(self) -> float:
        present = self.elements - self.missing
        return 100.0 * self.unexpected / present if present else 0.0

    @property
    def success(self) -> bool:
        mostly = self.rule.get("mostly", 1.0)
        return self.error is None and 1.0 - self.unexpected_percent / 100.0 >= mostly

    def describe(self) -> str:
        where = f" in {', '.join(self.parts)}" if self.parts else ""
        if self.error is not None:
            return f"column '{self.column}': {self.expectation} could not run ({self.error}){where}"
        return (
            f"column '{self.column}': {self.expectation} {self.rule} failed "
            f"({self.unexpected_percent:.1f}% unexpected, e.g. {self.examples}){where}"
        )


class PartCheck(BaseModel):
    """What checking some rows found, in counts that merge: a partition's share of a dataset's verdict."""

    kinds: dict[str, str | None] = {}
    """Per column with values: why its values are of the wrong kind, or None; judged where it first has values."""
    tallies: dict[str, Tally] = {}

    def plus(self, later: "PartCheck") -> "PartCheck":
        """The counts of both, `later`'s rows coming after this one's."""
        tallies = dict(self.tallies)
        for key, tally in later.tallies.items():
            tallies[key] = tallies[key].plus(tally) if key in tallies else tally
        return PartCheck(kinds={**later.kinds, **self.kinds}, tallies=tallies)

    def verdict(self, contract: DataContract) -> ContractCheck:
        kind_failures = [self.kinds.get(c.name, f"column '{c.name}': entirely null") for c in contract.columns]
        well_typed = {c.name for c in contract.columns if self.kinds.get(c.name, "") is None}
        failing = [t for t in self.tallies.values() if t.column in well_typed and not t.success]
        return ContractCheck(
            failures=[f for f in kind_failures if f] + [t.describe() for t in failing if not t.observed],
            signals=[t.describe() for t in failing if t.observed],
        )


def validate(dataset: DatasetRef, contract: DataContract, store: Datastore) -> DatasetRef:
    """Return `dataset` unchanged if it keeps `contract`; values outside what training showed are only logged.

    Raises:
        ValidationFailed: naming the data, the contract file (if any), every column that breaks
            a promise, and how (and, for a partitioned dataset, in which partitions).
    """
    return accept(dataset, contract, [check_part(part, contract, store) for part in partitions(dataset)])


def check_part(part: DatasetRef, contract: DataContract, store: Datastore) -> PartCheck:
    """The counts of one partition (or of a whole one-file dataset), read a row group at a time."""
    label = part.parts[0] if part.partitioned else ""
    return check_frames((group.to_pandas() for group in row_groups(part, store)), contract, part.source, label)


def accept(dataset: DatasetRef, contract: DataContract, checks: list[PartCheck]) -> DatasetRef:
    """`dataset`, if its partitions' `checks` (in order) together keep `contract`; see `validate`."""
    check = functools.reduce(PartCheck.plus, checks).verdict(contract)
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
    return check_frames([frame], contract, source).verdict(contract)


def check_frames(frames: Iterable[pd.DataFrame], contract: DataContract, source: str, part: str = "") -> PartCheck:
    """The counts of the rows of all `frames` together; `part` names the partition they are (if any).

    Each frame is checked by the same suite and the counts add up (values, missing values and
    unexpected values per expectation), so verdicts and shares are those of the whole data: a
    `mostly` holds or fails on the total, not batch by batch. A column's kind is judged on the first
    frame where it has values.
    """
    kinds: dict[str, str | None] = {}
    check = PartCheck()
    with _Suite(threads=available_cores()) as suite:
        for index, frame in enumerate(frames):
            if index == 0:
                require_columns(frame, [c.name for c in contract.columns], source)
            for column in contract.columns:
                if column.name not in kinds and not frame[column.name].isna().all():
                    failure = _kind_failure(frame[column.name], column)
                    kinds[column.name] = f"{failure} in {part}" if failure and part else failure
            well_typed = [c for c in contract.columns if kinds.get(c.name) is None]
            check = check.plus(PartCheck(tallies=suite.run(frame, well_typed)))
    if part:
        failing = {key: t.model_copy(update={"parts": [part]}) for key, t in check.tallies.items() if not t.success}
        check = check.model_copy(update={"tallies": {**check.tallies, **failing}})
    return check.model_copy(update={"kinds": kinds})


def _kind_failure(series: pd.Series, column: ColumnContract) -> str | None:
    # Checked here rather than by ExpectColumnValuesToBeInTypeList: great-expectations 1.24
    # does not recognise pandas 3's `str` dtype under any type name.
    actual = column_kind(series)
    if actual != column.kind:
        return f"column '{column.name}': expected {column.kind}, got dtype {series.dtype}"
    return None


class _Suite:
    """The contract's expectations, run frame by frame; a large frame's column by column, in threads.

    great-expectations copies the frame it is given for each check: in a large frame each
    column's checks run on a frame of that column alone, and the columns are shared out among
    `threads` threads, each with a great-expectations context of its own, since much of a check
    runs in pandas and Arrow, which leave the GIL (0.74 s instead of 1.07 s to validate 1M rows ×
    30 columns on 2 cores). A context manager: leaving it stops the threads.
    """

    def __init__(self, threads: int) -> None:
        self._threads = ThreadPoolExecutor(threads, thread_name_prefix="mlpipe-validate")
        self._contexts = threading.local()

    def __enter__(self) -> "_Suite":
        return self

    def __exit__(self, *_: object) -> None:
        self._threads.shutdown()

    def run(self, frame: pd.DataFrame, columns: list[ColumnContract]) -> dict[str, Tally]:
        """The counts of `columns`' expectations on `frame`, in the columns' order."""
        if len(frame) < COLUMNWISE_ROWS:
            return self._run(frame, columns)
        tallies: dict[str, Tally] = {}
        for found in self._threads.map(lambda column: self._run(frame[[column.name]], [column]), columns):
            tallies.update(found)
        return tallies

    def _run(self, frame: pd.DataFrame, columns: list[ColumnContract]) -> dict[str, Tally]:
        import great_expectations as gx
        from great_expectations.validator.v1_validator import Validator

        expectations = [e for column in columns for e in [*expectations_for(column), *observations_for(column)]]
        # What `Batch.validate` runs, without the batch it would be called on: each batch hashes its whole
        # frame (0.3 s at 1M rows × 30 columns), and the validator builds its own from the same frame.
        # BASIC gives the counts that add up over frames (and a few examples) at little more than pass/fail's cost.
        validator = Validator(self._batch_definition(), result_format="BASIC", batch_parameters={"dataframe": frame})
        verdicts = validator.validate_expectation_suite(gx.ExpectationSuite(name="contract", expectations=expectations))
        tallies = (self._tally(result) for result in verdicts.results)
        return {f"{t.column}|{t.expectation}|{t.observed}": t for t in tallies}

    def _batch_definition(self) -> "BatchDefinition":
        """This thread's whole-dataframe batch definition, in an ephemeral context of its own."""
        if not hasattr(self._contexts, "batches"):
            import great_expectations as gx
            from great_expectations.data_context.types.base import ProgressBarsConfig

            context = gx.get_context(mode="ephemeral")
            context.variables.progress_bars = ProgressBarsConfig(globally=False)
            self._contexts.batches = (
                context.data_sources.add_pandas("mlpipe")
                .add_dataframe_asset("dataset")
                .add_batch_definition_whole_dataframe("all")
            )
        return self._contexts.batches

    def _tally(self, result: "ExpectationValidationResult") -> Tally:
        config = _config(result)
        details = result.result or {}
        error = None
        if result.exception_info and result.exception_info.get("raised_exception"):
            error = str(result.exception_info.get("exception_message"))
        return Tally(
            column=str(config.kwargs.get("column")),
            expectation=config.type,
            rule={k: v for k, v in config.kwargs.items() if k in ("min_value", "max_value", "value_set", "mostly")},
            observed=bool((config.meta or {}).get(OBSERVED)),
            elements=details.get("element_count") or 0,
            missing=details.get("missing_count") or 0,
            unexpected=details.get("unexpected_count") or 0,
            examples=(details.get("partial_unexpected_list") or [])[:3],
            error=error,
        )


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
check_part_task = pipeline_task(check_part)
accept_task = pipeline_task(accept)
