"""Additive summaries of data against the reference's bins: what a drift check computes per partition.

The reference (the champion's training data) fixes the bins once: quantile edges, range and
spread for numbers, categories for the rest (a `Baseline`). Any slice of data then becomes a
`Profile`: per column the missing values, the counts in those bins (values outside the
reference's range in bins of their own), the counts of the `top_categories` most frequent categories
plus an `other` count for the rest, and a small uniform sample for significance tests on small data.
Profiles of partitions merge by adding counts, so the current data is summarised on Dask workers in
one pass and is never held whole, and a column of ids or free text costs `top_categories` entries,
not one per distinct value.

Merging is exact for numbers, missing values and totals (top counts + `other` = present values). A
category's merged count is exact when every part kept it among its top ones or never saw it (always
so while no part holds more than `top_categories` distinct values); a part that folded it into its
`other` leaves it low by at most that part's `other` count. After each merge the categories are cut
to the top ones again, ties broken by name, so every worker cuts alike.
"""

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from mlpipe.blocks.drift import DriftPolicy

OTHER = "<other>"
"""The bucket of the categories beyond the top ones, when tests compare category counts."""


@dataclass(frozen=True)
class NumericBins:
    """A numeric feature's bins, taken from the reference.

    `edges` are the reference's minimum, its inner quantile edges and (just above) its maximum, so
    one `searchsorted` gives the drift bins and the out-of-range counts together.
    """

    edges: np.ndarray
    scale: float

    @property
    def inner(self) -> np.ndarray:
        """The quantile edges between the drift bins (whose outer bins are open)."""
        return self.edges[1:-1]

    @property
    def low(self) -> float:
        return float(self.edges[0]) if len(self.edges) else float("nan")

    @property
    def high(self) -> float:
        return float(np.nextafter(self.edges[-1], -np.inf)) if len(self.edges) else float("nan")


@dataclass
class ColumnProfile:
    """One column of one slice of data, in the reference's bins."""

    missing: int = 0
    counts: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Numbers: [below the reference's range, drift bins…, above it]."""
    categories: dict[str, int] = field(default_factory=dict)
    """The most frequent categories' counts (at most the baseline's `top_categories`)."""
    other: int = 0
    """Present values of the categories beyond the top ones."""
    sample: np.ndarray = field(default_factory=lambda: np.zeros(0))
    """Numbers: a uniform sample of the present values, all of them while fewer than the policy's `small_sample`."""
    present: int = 0

    @property
    def drift_counts(self) -> np.ndarray:
        """Counts in the drift bins, the out-of-range values folded into the open outer bins."""
        counts = self.counts
        return np.concatenate([[counts[0] + counts[1]], counts[2:-2], [counts[-2] + counts[-1]]])

    @property
    def category_counts(self) -> dict[str, int]:
        """The top categories' counts, and the rest as one `OTHER` bucket when there is a rest: what tests compare."""
        return {**self.categories, OTHER: self.other} if self.other else dict(self.categories)

    @property
    def outside(self) -> int:
        """Values outside the reference's range."""
        return int(self.counts[0] + self.counts[-1]) if len(self.counts) else 0


@dataclass
class Profile:
    """Every compared column of a slice of data; `unparseable` counts CSV rows left out for a bad cell."""

    rows: int
    columns: dict[str, ColumnProfile]
    unparseable: int = 0


@dataclass(frozen=True)
class Baseline:
    """The reference's bins: what every slice of current data is counted against."""

    numeric: dict[str, NumericBins]
    categorical: list[str]
    sample_rows: int
    top_categories: int

    @classmethod
    def of(cls, reference: pd.DataFrame, policy: DriftPolicy) -> "Baseline":
        """Quantile bins, range and spread of each numeric column; every other column is categorical."""
        numeric, categorical = {}, []
        for name in reference.columns:
            if is_numeric(reference[name]):
                values = _floats(reference[name])
                numeric[name] = _bins(values[~np.isnan(values)], policy.bins)
            else:
                categorical.append(name)
        return cls(
            numeric=numeric,
            categorical=categorical,
            sample_rows=policy.small_sample,
            top_categories=policy.top_categories,
        )

    def profile(self, frame: pd.DataFrame, seed: int, unparseable: int = 0) -> Profile:
        """Count `frame` into the bins; `seed` makes the sample reproducible per partition."""
        rng = np.random.default_rng(seed)
        columns = {name: self._numeric(frame[name], bins, rng) for name, bins in self.numeric.items()}
        columns.update({name: _categorical(frame[name], self.top_categories) for name in self.categorical})
        return Profile(rows=len(frame), columns=columns, unparseable=unparseable)

    def merge(self, first: Profile, second: Profile, seed: int = 0) -> Profile:
        """The profile of both slices together: counts add, samples stay uniform over the union."""
        rng = np.random.default_rng(seed)
        columns = {}
        for name, one in first.columns.items():
            other = second.columns[name]
            categories = dict(one.categories)
            for category, count in other.categories.items():
                categories[category] = categories.get(category, 0) + count
            top, folded = _top(categories, self.top_categories)
            columns[name] = ColumnProfile(
                missing=one.missing + other.missing,
                counts=one.counts + other.counts if len(one.counts) else other.counts,
                categories=top,
                other=one.other + other.other + folded,
                sample=_merge_samples(one, other, self.sample_rows, rng),
                present=one.present + other.present,
            )
        return Profile(
            rows=first.rows + second.rows, columns=columns, unparseable=first.unparseable + second.unparseable
        )

    def _numeric(self, values: pd.Series, bins: NumericBins, rng: np.random.Generator) -> ColumnProfile:
        floats = _floats(values)
        missing = np.isnan(floats)
        absent = int(missing.sum())
        counts = np.bincount(np.searchsorted(bins.edges, floats, side="right"), minlength=len(bins.edges) + 1)
        counts[-1] -= absent  # NaN sorts after every edge
        present = floats[~missing] if absent else floats
        take = min(len(present), self.sample_rows)
        sample = present[rng.choice(len(present), take, replace=False)] if take < len(present) else present.copy()
        return ColumnProfile(missing=absent, counts=counts, sample=sample, present=len(present))


def is_numeric(values: pd.Series) -> bool:
    """Numbers get binned tests; booleans, strings and everything else are categories."""
    return pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)


def _floats(values: pd.Series) -> np.ndarray:
    return values.to_numpy(dtype="float64", na_value=np.nan)


def _bins(values: np.ndarray, bins: int) -> NumericBins:
    if not len(values):
        return NumericBins(edges=np.zeros(0), scale=1.0)
    low, high = float(values.min()), float(values.max())
    edges = np.concatenate([[low], quantile_edges(values, bins), [np.nextafter(high, np.inf)]])
    return NumericBins(edges=edges, scale=float(np.std(values)) or 1.0)


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (repeated values collapse), open at both ends."""
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))


def _categorical(values: pd.Series, top_categories: int) -> ColumnProfile:
    """Counts of the top categories and of the rest; missing values and empty strings (how CSV writes a missing
    category) are missing."""
    counts = values.value_counts(dropna=True)
    categories: dict[str, int] = {}
    for category, count in zip(counts.index, counts.to_numpy(), strict=True):
        key = str(category)
        if key.strip():
            categories[key] = categories.get(key, 0) + int(count)
    present = sum(categories.values())
    top, other = _top(categories, top_categories)
    return ColumnProfile(missing=len(values) - present, categories=top, other=other, present=present)


def _top(categories: dict[str, int], size: int) -> tuple[dict[str, int], int]:
    """The `size` most frequent categories (ties by name, so every worker cuts alike) and the count of the rest."""
    if len(categories) <= size:
        return categories, 0
    ranked = sorted(categories.items(), key=lambda item: (-item[1], item[0]))
    return dict(ranked[:size]), sum(count for _, count in ranked[size:])


def _merge_samples(one: ColumnProfile, other: ColumnProfile, size: int, rng: np.random.Generator) -> np.ndarray:
    """A uniform sample (without replacement) of both slices' present values, from their own samples."""
    if one.present + other.present <= size or not len(one.sample) + len(other.sample):  # complete, or categories
        return np.concatenate([one.sample, other.sample])
    from_one = int(rng.hypergeometric(one.present, other.present, size))
    return np.concatenate(
        [
            rng.choice(one.sample, from_one, replace=False),
            rng.choice(other.sample, size - from_one, replace=False),
        ]
    )
