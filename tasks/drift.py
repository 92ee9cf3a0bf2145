"""Drift statistics: one test per feature, chosen by kind and sample size, and the dataset's verdict.

Large samples are compared as histograms over the reference's quantile bins (numbers) or its
categories, so the work is one pass over the current data and the statistics (PSI,
Jensen–Shannon, binned Wasserstein) add up across partitions when the data is on Dask.
"""

from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy import stats
from scipy.spatial.distance import jensenshannon

from blocks.drift import DriftPolicy

Test = Literal["ks", "chi_square", "wasserstein", "psi", "jensen_shannon"]
EPSILON = 1e-4
"""Floor for empty bins in PSI, so a category that disappears gives a large but finite value."""


class FeatureDrift(BaseModel):
    """One feature's test, its statistic against the threshold, and the verdict."""

    feature: str
    kind: Literal["numeric", "categorical"]
    test: Test
    statistic: float
    threshold: float
    drifted: bool
    reference_rows: int
    current_rows: int


class DatasetDrift(BaseModel):
    """Every feature's result and whether the dataset as a whole drifted."""

    features: list[FeatureDrift]
    drift_share: float
    drifted: bool
    drifted_features: list[str]


def feature_drift(name: str, reference: pd.Series, current: pd.Series, policy: DriftPolicy) -> FeatureDrift:
    """Compare one feature's current values with its reference values (missing values left out).

    An empty string counts as missing: CSV files write a missing category that way, Parquet as null.
    """
    reference, current = _present(reference), _present(current)
    numeric = pd.api.types.is_numeric_dtype(reference) and not pd.api.types.is_bool_dtype(reference)
    small = min(len(reference), len(current)) < policy.small_sample
    if numeric:
        ref, cur = reference.to_numpy(dtype="float64"), current.to_numpy(dtype="float64")
        test, statistic, threshold = _numeric(ref, cur, small, policy)
    else:
        test, statistic, threshold = _categorical(reference.astype(str), current.astype(str), small, policy)
    drifted = statistic < threshold if test in ("ks", "chi_square") else statistic > threshold
    return FeatureDrift(
        feature=name,
        kind="numeric" if numeric else "categorical",
        test=test,
        statistic=statistic,
        threshold=threshold,
        drifted=bool(drifted),
        reference_rows=len(reference),
        current_rows=len(current),
    )


def _present(values: pd.Series) -> pd.Series:
    values = values.dropna()
    if values.dtype == object or pd.api.types.is_string_dtype(values):
        values = values[values.astype(str).str.strip() != ""]
    return values


def dataset_drift(features: list[FeatureDrift], policy: DriftPolicy) -> DatasetDrift:
    """Drifted when the share of drifted features reaches the policy's, or any critical feature drifted."""
    drifted = [f.feature for f in features if f.drifted]
    share = len(drifted) / len(features) if features else 0.0
    critical = any(name in policy.critical for name in drifted)
    return DatasetDrift(
        features=features,
        drift_share=share,
        drifted=share >= policy.drift_share or critical,
        drifted_features=drifted,
    )


def _numeric(ref: np.ndarray, cur: np.ndarray, small: bool, policy: DriftPolicy) -> tuple[Test, float, float]:
    if small:  # statistic reported is the p-value: drifted below the threshold
        return "ks", float(stats.ks_2samp(ref, cur).pvalue), policy.p_value
    edges = quantile_edges(ref, policy.bins)
    expected, actual = histogram(ref, edges), histogram(cur, edges)
    if policy.numeric_test == "psi":
        return "psi", psi(expected, actual), policy.psi_threshold
    scale = float(np.std(ref)) or 1.0
    return "wasserstein", binned_wasserstein(expected, actual, edges) / scale, policy.wasserstein_threshold


def _categorical(ref: pd.Series, cur: pd.Series, small: bool, policy: DriftPolicy) -> tuple[Test, float, float]:
    categories = sorted(set(ref.unique()) | set(cur.unique()))
    expected = ref.value_counts().reindex(categories, fill_value=0).to_numpy(dtype="float64")
    actual = cur.value_counts().reindex(categories, fill_value=0).to_numpy(dtype="float64")
    if small:
        if len(categories) < 2:
            return "chi_square", 1.0, policy.p_value
        table = np.vstack([expected, actual])
        return "chi_square", float(stats.chi2_contingency(table[:, table.sum(axis=0) > 0])[1]), policy.p_value
    if policy.categorical_test == "psi":
        return "psi", psi(expected, actual), policy.psi_threshold
    return "jensen_shannon", float(jensenshannon(expected, actual, base=2)), policy.jensen_shannon_threshold


def quantile_edges(reference: np.ndarray, bins: int) -> np.ndarray:
    """Inner bin edges at the reference's quantiles (repeated values collapse), open at both ends."""
    return np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))


def histogram(values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts per bin: below the first edge, between edges, at or above the last."""
    return np.bincount(np.searchsorted(edges, values, side="right"), minlength=len(edges) + 1).astype("float64")


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two histograms over the same bins."""
    p = np.maximum(expected / expected.sum(), EPSILON)
    q = np.maximum(actual / actual.sum(), EPSILON)
    return float(np.sum((q - p) * np.log(q / p)))


def binned_wasserstein(expected: np.ndarray, actual: np.ndarray, edges: np.ndarray) -> float:
    """Earth mover's distance between two histograms: the area between their CDFs across the edges.

    The CDFs are known at the edges and joined linearly (trapezoids); the open outer bins add no
    width, so a pure shift reads about 10 % low with 20 quantile bins (the tails' share).
    """
    cdf_gap = np.abs(np.cumsum(expected / expected.sum()) - np.cumsum(actual / actual.sum()))[:-1]
    if len(edges) < 2:  # a constant reference: the share of current values that left it
        return float(cdf_gap[0])
    return float(np.sum((cdf_gap[:-1] + cdf_gap[1:]) / 2 * np.diff(edges)))
