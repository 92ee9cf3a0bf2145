"""Drift statistics against scipy on known distributions, and effect sizes that stay meaningful at 1M rows."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial.distance import jensenshannon

from mlpipe.blocks.drift import DriftPolicy
from mlpipe.tasks.monitoring.drift import binned_wasserstein, dataset_drift, feature_drift, psi
from mlpipe.tasks.monitoring.profiles import Baseline

pytestmark = pytest.mark.unit

RNG = np.random.default_rng(7)
POLICY = DriftPolicy()


def normal(rows: int, shift: float = 0.0, scale: float = 1.0) -> pd.Series:
    return pd.Series(RNG.normal(shift, scale, rows))


def categories(rows: int, weights: list[float]) -> pd.Series:
    return pd.Series(RNG.choice(["a", "b", "c", "d"], size=rows, p=weights))


def test_small_samples_use_scipy_ks_and_chi_square():
    reference, current = normal(500), normal(400, shift=0.5)
    result = feature_drift("x", reference, current, POLICY)
    assert result.test == "ks" and result.drifted
    assert result.statistic == pytest.approx(stats.ks_2samp(reference, current).pvalue)
    same = feature_drift("x", normal(500), normal(400), POLICY)
    assert same.test == "ks" and not same.drifted

    ref_cat, cur_cat = categories(600, [0.4, 0.3, 0.2, 0.1]), categories(500, [0.1, 0.2, 0.3, 0.4])
    result = feature_drift("c", ref_cat, cur_cat, POLICY)
    table = pd.crosstab(np.r_[np.zeros(600), np.ones(500)], np.r_[ref_cat, cur_cat]).to_numpy()
    assert result.test == "chi_square" and result.drifted
    assert result.statistic == pytest.approx(stats.chi2_contingency(table)[1])


def test_binned_statistics_match_scipy_and_the_definitions():
    reference, current = normal(200_000).to_numpy(), normal(200_000, shift=0.3).to_numpy()
    baseline = Baseline.of(pd.DataFrame({"x": reference}), POLICY)
    edges = baseline.numeric["x"].inner
    np.testing.assert_allclose(edges, np.quantile(reference, np.arange(1, 20) / 20))
    expected, actual = (
        baseline.profile(pd.DataFrame({"x": v}), seed=0).columns["x"].drift_counts for v in (reference, current)
    )
    open_ended = np.r_[-np.inf, edges, np.inf]
    np.testing.assert_array_equal(actual, np.histogram(current, open_ended)[0])
    assert expected.sum() == actual.sum() == 200_000 and len(expected) == 20
    assert binned_wasserstein(expected, actual, edges) == pytest.approx(
        stats.wasserstein_distance(reference, current), rel=0.15
    )
    p, q = expected / expected.sum(), actual / actual.sum()
    assert psi(expected, actual) == pytest.approx(float(np.sum((q - p) * np.log(q / p))))
    ref_cat, cur_cat = categories(50_000, [0.4, 0.3, 0.2, 0.1]), categories(50_000, [0.25, 0.25, 0.25, 0.25])
    result = feature_drift("c", ref_cat, cur_cat, POLICY)
    counts = [s.value_counts().reindex(["a", "b", "c", "d"]).to_numpy() for s in (ref_cat, cur_cat)]
    assert result.test == "jensen_shannon"
    assert result.statistic == pytest.approx(jensenshannon(counts[0], counts[1], base=2))


def test_a_million_rows_of_the_same_distribution_do_not_drift_but_a_real_shift_does():
    rows = 1_000_000
    reference = {
        "income": normal(rows),
        "score": normal(rows, scale=3),
        "region": categories(rows, [0.4, 0.3, 0.2, 0.1]),
    }
    same = {"income": normal(rows), "score": normal(rows, scale=3), "region": categories(rows, [0.4, 0.3, 0.2, 0.1])}
    results = [feature_drift(name, reference[name], same[name], POLICY) for name in reference]
    assert not any(r.drifted for r in results), results
    # A p-value test would call a 0.01-std shift significant at this size; the effect size does not.
    assert stats.ks_2samp(reference["income"], normal(rows, shift=0.02)).pvalue < 1e-6
    assert not feature_drift("income", reference["income"], normal(rows, shift=0.02), POLICY).drifted
    shifted = feature_drift("income", reference["income"], normal(rows, shift=0.3), POLICY)
    assert shifted.test == "wasserstein" and shifted.drifted and 0.2 < shifted.statistic < 0.35
    moved = feature_drift("region", reference["region"], categories(rows, [0.1, 0.2, 0.3, 0.4]), POLICY)
    assert moved.drifted


def test_dataset_drift_by_share_or_by_a_critical_feature():
    reference, drifted = normal(5_000), normal(5_000, shift=1.0)
    results = [feature_drift(n, reference, drifted if n in ("a", "b") else normal(5_000), POLICY) for n in "abcd"]
    assert dataset_drift(results, POLICY).drifted  # 2 of 4 reach the default share of 0.5
    assert dataset_drift(results, POLICY).drifted_features == ["a", "b"]
    one = [feature_drift(n, reference, drifted if n == "a" else normal(5_000), POLICY) for n in "abcd"]
    assert not dataset_drift(one, POLICY).drifted
    assert dataset_drift(one, DriftPolicy(critical=["a"])).drifted
    psi_policy = DriftPolicy(numeric_test="psi")
    assert feature_drift("a", reference, drifted, psi_policy).test == "psi"


def test_profiles_of_partitions_merge_into_the_profile_of_the_whole():
    rows = 30_000
    frame = pd.DataFrame({"x": normal(rows), "region": categories(rows, [0.4, 0.3, 0.2, 0.1]).astype(object)})
    frame.loc[::7, "x"] = np.nan
    frame.loc[::11, "region"] = ""  # how CSV writes a missing category
    frame.loc[::13, "region"] = None
    baseline = Baseline.of(frame.iloc[:10_000], POLICY)
    parts = [baseline.profile(frame.iloc[start : start + 7_000], seed=start) for start in range(0, rows, 7_000)]
    merged = parts[0]
    for part in parts[1:]:
        merged = baseline.merge(merged, part)
    whole = baseline.profile(frame, seed=0)
    assert merged.rows == whole.rows == rows
    for name in ("x", "region"):
        one, other = merged.columns[name], whole.columns[name]
        assert (one.missing, one.present, one.outside) == (other.missing, other.present, other.outside)
        np.testing.assert_array_equal(one.counts, other.counts)
        assert one.categories == other.categories
    assert whole.columns["x"].missing == frame["x"].isna().sum()
    assert whole.columns["region"].missing == ((frame["region"] == "") | frame["region"].isna()).sum()
    assert "" not in whole.columns["region"].categories
    outside = ((frame["x"] < frame["x"][:10_000].min()) | (frame["x"] > frame["x"][:10_000].max())).sum()
    assert whole.columns["x"].outside == outside > 0
    sample = merged.columns["x"].sample  # uniform over the union: as many from each part as its share
    assert len(sample) == POLICY.small_sample and set(sample) <= set(frame["x"].dropna())
    assert stats.ks_2samp(sample, frame["x"].dropna()).pvalue > 0.001


def test_a_small_current_sample_is_kept_whole_across_partitions():
    reference = pd.DataFrame({"x": normal(5_000)})
    baseline = Baseline.of(reference, POLICY)
    current = normal(600, shift=0.4)
    merged = baseline.merge(
        baseline.profile(current[:250].to_frame("x"), seed=1), baseline.profile(current[250:].to_frame("x"), seed=2)
    )
    assert sorted(merged.columns["x"].sample) == sorted(current)
    result = feature_drift("x", reference["x"], current, POLICY)
    assert result.test == "ks" and result.drifted and result.current_rows == 600


def test_categorical_profiles_keep_the_top_categories_and_merge_exactly_within_them():
    policy = POLICY.model_copy(update={"top_categories": 3})
    rng = np.random.default_rng(5)
    ids = pd.Series([f"id-{i}" for i in rng.integers(0, 5_000, 20_000)], dtype=object)  # ~5,000 distinct values
    few = categories(20_000, [0.4, 0.3, 0.2, 0.1]).astype(object)  # 4 categories, top 3 kept
    frame = pd.DataFrame({"id": ids, "region": few})
    baseline = Baseline.of(frame, policy)
    parts = [baseline.profile(frame.iloc[start : start + 5_000], seed=start) for start in range(0, 20_000, 5_000)]
    merged = parts[0]
    for part in parts[1:]:
        merged = baseline.merge(merged, part)
    whole = baseline.profile(frame, seed=0)
    for name in ("id", "region"):
        column = merged.columns[name]
        assert len(column.categories) == 3  # bounded, whatever the number of distinct values
        assert sum(column.categories.values()) + column.other == column.present == 20_000
    region, truth = merged.columns["region"], frame["region"].value_counts()
    assert region.categories == {key: int(truth[key]) for key in truth.index[:3]}  # exact: every part kept these three
    assert region.other == int(truth.iloc[3]) and region.category_counts["<other>"] == region.other
    assert region.categories == whole.columns["region"].categories
