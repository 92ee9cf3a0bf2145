"""The dataset's drift verdict as a pure function: importance-weighted share, prediction drift, critical features."""

import numpy as np
import pandas as pd
import pytest

from mlpipe.blocks.drift import DriftPolicy
from mlpipe.tasks.monitoring.drift import FeatureDrift, dataset_drift, feature_drift, importance_weights

pytestmark = pytest.mark.unit

ROWS = 3_000
NAMES = [f"f{i:02d}" for i in range(30)]
IMPORTANT, UNIMPORTANT = NAMES[:10], NAMES[20:]
IMPORTANCE = {name: 0.05 if name in IMPORTANT else 0.001 for name in NAMES}
"""What permutation importance gives a model leaning on ten features: the other twenty barely matter."""


def thirty_features(shifted: list[str]) -> list[FeatureDrift]:
    """Real tests on 30 numbers, `shifted` moved by 1.5 standard deviations (most values outside training's range)."""
    rng = np.random.default_rng(3)
    return [
        feature_drift(
            name,
            pd.Series(rng.normal(0, 1, ROWS)),
            pd.Series(rng.normal(1.5 if name in shifted else 0.0, 1, ROWS)),
            DriftPolicy(),
        )
        for name in NAMES
    ]


def still(name: str = "prediction score") -> FeatureDrift:
    return FeatureDrift(
        feature=name,
        kind="numeric",
        test="wasserstein",
        statistic=0.01,
        threshold=0.1,
        drifted=False,
        reference_rows=ROWS,
        current_rows=ROWS,
    )


def moved(name: str = "prediction score") -> FeatureDrift:
    return still(name).model_copy(update={"statistic": 0.4, "drifted": True})


WEIGHTS = importance_weights(NAMES, IMPORTANCE, "permutation importance (log loss)")


def test_ten_of_thirty_important_features_shifted_is_drift_though_a_third_of_the_features():
    verdict = dataset_drift(thirty_features(IMPORTANT), DriftPolicy(), WEIGHTS, still())
    assert verdict.drifted_features == IMPORTANT
    assert verdict.drift_share == pytest.approx(1 / 3)  # the old verdict: below 0.5, "no drift"
    assert verdict.drifted and verdict.rules == ["weighted_share"]
    assert verdict.weighted_share == pytest.approx(0.5 / 0.52) and verdict.weighted_share >= 0.5
    by_name = {f.feature: f for f in verdict.features}
    assert by_name["f00"].weight == pytest.approx(0.05 / 0.52) and by_name["f00"].contribution == by_name["f00"].weight
    assert by_name["f25"].weight == pytest.approx(0.001 / 0.52) and by_name["f25"].contribution == 0.0
    assert sum(f.contribution or 0.0 for f in verdict.features) == pytest.approx(verdict.weighted_share)
    assert verdict.weighting.startswith("permutation importance")


def test_ten_unimportant_features_shifted_is_not_drift():
    verdict = dataset_drift(thirty_features(UNIMPORTANT), DriftPolicy(), WEIGHTS, still())
    assert verdict.drifted_features == UNIMPORTANT and verdict.drift_share == pytest.approx(1 / 3)
    assert not verdict.drifted and verdict.rules == []
    assert verdict.weighted_share == pytest.approx(0.01 / 0.52)


def test_prediction_drift_alone_is_drift_unless_the_policy_turns_it_off():
    features = [still(name) for name in NAMES]
    verdict = dataset_drift(features, DriftPolicy(), WEIGHTS, moved())
    assert verdict.drifted and verdict.rules == ["prediction"] and verdict.weighted_share == 0.0
    assert not dataset_drift(features, DriftPolicy(prediction_drift=False), WEIGHTS, moved()).drifted
    assert not dataset_drift(features, DriftPolicy(), WEIGHTS, still()).drifted


def test_a_critical_feature_alone_is_drift_and_every_rule_that_fired_is_named():
    features = [moved(name) if name == "f25" else still(name) for name in NAMES]
    assert not dataset_drift(features, DriftPolicy(), WEIGHTS, still()).drifted
    verdict = dataset_drift(features, DriftPolicy(critical=["f25"]), WEIGHTS, still())
    assert verdict.drifted and verdict.rules == ["critical"] and verdict.critical_drifted == ["f25"]
    everything = [moved(name) if name in [*IMPORTANT, "f25"] else still(name) for name in NAMES]
    verdict = dataset_drift(everything, DriftPolicy(critical=["f25"]), WEIGHTS, moved())
    assert verdict.rules == ["weighted_share", "prediction", "critical"]


def test_without_stored_importance_every_feature_weighs_the_same_and_the_report_says_so():
    equal = importance_weights(NAMES, None, "")
    assert list(equal.weights.values()) == pytest.approx([1 / 30] * 30)
    assert "equal weights" in equal.basis and "no stored feature importance" in equal.basis
    verdict = dataset_drift(thirty_features(IMPORTANT), DriftPolicy(prediction_drift=False), equal)
    assert not verdict.drifted and verdict.weighted_share == pytest.approx(1 / 3)
    assert verdict.weighting == equal.basis
    # Importances that are all zero or negative (noise) carry no ranking: equal weights, said so.
    flat = importance_weights(NAMES, dict.fromkeys(NAMES, -0.001), "permutation importance (log loss)")
    assert list(flat.weights.values()) == pytest.approx([1 / 30] * 30) and "equal weights" in flat.basis
    # A feature the stored importance does not know (a column added later) weighs nothing but is still tested.
    partial = importance_weights(["f00", "new"], {"f00": 0.2}, "permutation importance (log loss)")
    assert partial.weights == {"f00": 1.0, "new": 0.0}


def test_a_critical_feature_the_model_does_not_take_is_named_before_any_data_is_read():
    from mlpipe.errors import ConfigError
    from mlpipe.tasks.data.columns import InputColumn
    from mlpipe.tasks.monitoring.drift_check import check_policy
    from mlpipe.tasks.registry.model_ref import ResolvedModel

    inputs = [InputColumn(name=name, type="double") for name in ("income", "age")]
    model = ResolvedModel(
        reference="credit@champion", uri="models:/credit/3", name="credit", version="3", run_id=None, inputs=inputs
    )
    check_policy(DriftPolicy(critical=["income"]), model)
    with pytest.raises(ConfigError, match=r"drift\.critical: \['incme'\] .*'credit@champion'.*\['income', 'age'\]"):
        check_policy(DriftPolicy(critical=["incme", "age"]), model)
