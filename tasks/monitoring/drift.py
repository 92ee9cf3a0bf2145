"""Drift statistics: one test per feature, chosen by kind and sample size, and the dataset's verdict.

The verdict weighs each feature by the model's importance for it (stored at training), so ten
shifted features the model leans on count, and ten it ignores do not; the model's own scores
drifting, or a feature the policy names critical drifting, is drift whatever the share.

Large samples are compared as histograms over the reference's quantile bins (numbers) or its
categories, computed from `Profile`s: one pass over the current data, partition by partition,
whose counts add up (see tasks/monitoring/profiles.py).
"""

from collections.abc import Mapping
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from mlpipe.blocks.drift import DriftPolicy
from mlpipe.tasks.monitoring.profiles import Baseline, ColumnProfile, NumericBins

Test = Literal["ks", "chi_square", "wasserstein", "psi", "jensen_shannon"]
Rule = Literal["weighted_share", "prediction", "critical"]
"""Why a dataset drifted: the importance-weighted share reached the policy's, the scores drifted, a critical feature."""
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
    weight: float | None = None
    """The feature's share of the model's importance (None for the prediction score)."""
    contribution: float | None = None
    """What the feature adds to the weighted drift share: its weight if it drifted, else 0."""


class FeatureWeights(BaseModel):
    """How much each feature's drift counts toward the dataset's verdict (summing to 1), and on what basis."""

    weights: dict[str, float]
    basis: str


class DatasetDrift(BaseModel):
    """Every feature's result and whether the dataset as a whole drifted, with the rules that said so."""

    features: list[FeatureDrift]
    drift_share: float
    """Share of the features that drifted, each counted once."""
    weighted_share: float
    """Share of the model's importance held by the features that drifted: the share the policy's threshold is for."""
    weighting: str
    """What the weights are based on: the importance's method, or why every feature weighs the same."""
    drifted: bool
    rules: list[Rule]
    drifted_features: list[str]
    critical_drifted: list[str]


def feature_drift(name: str, reference: pd.Series, current: pd.Series, policy: DriftPolicy) -> FeatureDrift:
    """Compare one feature's current values with its reference values (missing values left out)."""
    baseline = Baseline.of(reference.to_frame(name), policy)
    profiles = [baseline.profile(values.to_frame(name), seed=0) for values in (reference, current)]
    return column_drift(name, baseline, profiles[0].columns[name], profiles[1].columns[name], policy)


def column_drift(
    name: str, baseline: Baseline, reference: ColumnProfile, current: ColumnProfile, policy: DriftPolicy
) -> FeatureDrift:
    """One feature's test, chosen by its kind and the smaller side's count of present values."""
    small = min(reference.present, current.present) < policy.small_sample
    bins = baseline.numeric.get(name)
    if not reference.present or not current.present:  # nothing to compare: the null-rate signal says why
        test: Test = "ks" if bins is not None else "chi_square"
        statistic, threshold = 1.0, policy.p_value
    elif bins is not None:
        test, statistic, threshold = _numeric(bins, reference, current, small, policy)
    else:
        test, statistic, threshold = _categorical(reference.category_counts, current.category_counts, small, policy)
    drifted = statistic < threshold if test in ("ks", "chi_square") else statistic > threshold
    return FeatureDrift(
        feature=name,
        kind="numeric" if bins is not None else "categorical",
        test=test,
        statistic=statistic,
        threshold=threshold,
        drifted=bool(drifted),
        reference_rows=reference.present,
        current_rows=current.present,
    )


def importance_weights(names: list[str], importances: Mapping[str, float] | None, method: str) -> FeatureWeights:
    """Weights proportional to the model's importance of each feature, or equal ones when it gives no ranking.

    A negative permutation importance is noise (shuffling the column happened to help), so it
    counts as 0. With nothing stored (a model registered before importances were recorded) or
    nothing positive, every feature weighs the same, and the basis says why.
    """
    kept = {name: max(float((importances or {}).get(name, 0.0)), 0.0) for name in names}
    total = sum(kept.values())
    if importances is not None and total > 0:
        return FeatureWeights(weights={name: value / total for name, value in kept.items()}, basis=method)
    why = (
        "no stored feature importance (a model registered before importances were recorded)"
        if importances is None
        else "no feature has a positive importance"
    )
    equal = 1 / len(names) if names else 0.0
    return FeatureWeights(weights=dict.fromkeys(names, equal), basis=f"equal weights: {why}")


def dataset_drift(
    features: list[FeatureDrift],
    policy: DriftPolicy,
    weights: FeatureWeights | None = None,
    prediction: FeatureDrift | None = None,
) -> DatasetDrift:
    """Drifted when the importance-weighted share of drifted features reaches the policy's, the model's
    scores drift (unless the policy turns that off), or a critical feature drifts; says which of these fired.

    Without `weights`, every feature weighs the same.
    """
    weights = weights or importance_weights([f.feature for f in features], None, "")
    weighed = []
    for feature in features:
        weight = weights.weights.get(feature.feature, 0.0)
        weighed.append(
            feature.model_copy(update={"weight": weight, "contribution": weight if feature.drifted else 0.0})
        )
    drifted = [f.feature for f in weighed if f.drifted]
    # Rounded so that 15 of 30 equal weights is 0.5, not 0.49999999999999994.
    weighted_share = round(sum(f.contribution or 0.0 for f in weighed), 12)
    critical = [name for name in drifted if name in policy.critical]
    fired: list[Rule] = []
    if weighted_share >= policy.drift_share:
        fired.append("weighted_share")
    if policy.prediction_drift and prediction is not None and prediction.drifted:
        fired.append("prediction")
    if critical:
        fired.append("critical")
    return DatasetDrift(
        features=weighed,
        drift_share=len(drifted) / len(features) if features else 0.0,
        weighted_share=weighted_share,
        weighting=weights.basis,
        drifted=bool(fired),
        rules=fired,
        drifted_features=drifted,
        critical_drifted=critical,
    )


def _numeric(
    bins: NumericBins, reference: ColumnProfile, current: ColumnProfile, small: bool, policy: DriftPolicy
) -> tuple[Test, float, float]:
    if small:  # statistic reported is the p-value: drifted below the threshold
        from scipy import stats  # (scipy's statistics load in the steps that test, not in every flow's process)

        return "ks", float(stats.ks_2samp(reference.sample, current.sample).pvalue), policy.p_value
    expected, actual = reference.drift_counts, current.drift_counts
    if policy.numeric_test == "psi":
        return "psi", psi(expected, actual), policy.psi_threshold
    return "wasserstein", binned_wasserstein(expected, actual, bins.inner) / bins.scale, policy.wasserstein_threshold


def _categorical(
    reference: dict[str, int], current: dict[str, int], small: bool, policy: DriftPolicy
) -> tuple[Test, float, float]:
    from scipy import stats
    from scipy.spatial.distance import jensenshannon

    categories = sorted(reference.keys() | current.keys())
    expected = np.array([reference.get(c, 0) for c in categories], dtype="float64")
    actual = np.array([current.get(c, 0) for c in categories], dtype="float64")
    if small:
        if len(categories) < 2:
            return "chi_square", 1.0, policy.p_value
        table = np.vstack([expected, actual])
        return "chi_square", float(stats.chi2_contingency(table[:, table.sum(axis=0) > 0])[1]), policy.p_value
    if policy.categorical_test == "psi":
        return "psi", psi(expected, actual), policy.psi_threshold
    return "jensen_shannon", float(jensenshannon(expected, actual, base=2)), policy.jensen_shannon_threshold


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
