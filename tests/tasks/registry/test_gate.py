"""The gate's rule, tested on numbers alone: threshold, fairness limit, margin, direction, ties."""

from pathlib import Path

import pytest

from mlpipe.blocks import GatePolicy
from mlpipe.blocks.config import run_config
from mlpipe.blocks.gate import FairnessLimit
from mlpipe.errors import ConfigError
from mlpipe.tasks.contract import ColumnContract, DataContract
from mlpipe.tasks.metrics import is_better
from mlpipe.tasks.model.fairness import ColumnFairness, Disparity, FairnessReport, GroupMetrics
from mlpipe.tasks.registry.gate import Champion, decide, require_binary, require_sensitive

pytestmark = pytest.mark.unit


def test_gate_passes_first_model_above_threshold():
    decision = decide("roc_auc", 0.81, GatePolicy(threshold=0.8), champion=None)
    assert decision.passed and decision.reason == "no champion yet"


def test_gate_rejects_below_threshold_even_without_champion():
    decision = decide("roc_auc", 0.79, GatePolicy(threshold=0.8), champion=None)
    assert not decision.passed and "below the threshold 0.8" in decision.reason


def test_gate_needs_more_than_the_margin_over_the_champion():
    policy = GatePolicy(margin=0.01)
    assert not decide("roc_auc", 0.805, policy, Champion(version="3", score=0.80)).passed
    assert decide("roc_auc", 0.811, policy, Champion(version="3", score=0.80)).passed


def test_gate_follows_the_metric_direction():
    assert decide("rmse", 9.0, GatePolicy(), Champion(version="1", score=10.0)).passed
    assert not decide("rmse", 11.0, GatePolicy(), Champion(version="1", score=10.0)).passed
    assert not decide("rmse", 11.0, GatePolicy(threshold=10.5), champion=None).passed


def test_a_tie_does_not_replace_the_champion():
    assert not is_better("roc_auc", 0.8, 0.8)
    assert not is_better("log_loss", 0.3, 0.3)
    assert is_better("log_loss", 0.29, 0.3)


def biased_report() -> FairnessReport:
    """A report whose demographic-parity difference on `sex` is 0.4123: group F selected at 0.21, M at 0.6223."""
    groups = [
        GroupMetrics(group="F", count=50, selection_rate=0.21, accuracy=0.8, recall=0.5, false_positive_rate=0.1),
        GroupMetrics(group="M", count=50, selection_rate=0.6223, accuracy=0.8, recall=0.9, false_positive_rate=0.3),
    ]
    parity = Disparity(value=0.4123, rate="selection_rate", low_group="F", low=0.21, high_group="M", high=0.6223)
    odds = Disparity(value=0.4, rate="recall", low_group="F", low=0.5, high_group="M", high=0.9)
    column = ColumnFairness(
        column="sex",
        model_input=False,
        groups=groups,
        differences={"demographic_parity_difference": parity, "equalized_odds_difference": odds},
    )
    return FairnessReport(task="classification", positive_class="1", rows=100, columns=[column])


def fairness_policy(metric: str, limit: float, **other: float) -> GatePolicy:
    return GatePolicy(fairness={"metric": metric, "max": limit}, **other)


def test_a_candidate_above_the_fairness_limit_fails_naming_metric_value_limit_and_groups():
    decision = decide("roc_auc", 0.9, fairness_policy("demographic_parity_difference", 0.1), None, biased_report())
    assert not decision.passed
    assert decision.reason == (
        "demographic_parity_difference on 'sex' is 0.4123 (selection_rate of group 'F' 0.21 vs 'M' 0.62), "
        "above the limit 0.1"
    )
    assert decision.fairness == {"sex": 0.4123} and decision.fairness_limit.max == 0.1
    # Whatever the champion scores: a fairer champion is not replaced by a better but unfair candidate.
    beaten = decide(
        "roc_auc",
        0.9,
        fairness_policy("equalized_odds_difference", 0.3),
        Champion(version="2", score=0.6),
        biased_report(),
    )
    assert not beaten.passed and beaten.reason.startswith(
        "equalized_odds_difference on 'sex' is 0.4000 (recall of group 'F'"
    )


def test_a_candidate_within_the_fairness_limit_passes_with_the_numbers_recorded():
    decision = decide("roc_auc", 0.9, fairness_policy("demographic_parity_difference", 0.5), None, biased_report())
    assert decision.passed and decision.reason == "no champion yet"
    assert decision.fairness == {"sex": 0.4123}
    assert decide("roc_auc", 0.9, GatePolicy(), None, biased_report()).fairness is None  # no limit, no numbers
    # The threshold still comes first.
    low = decide(
        "roc_auc", 0.7, fairness_policy("demographic_parity_difference", 0.01, threshold=0.8), None, biased_report()
    )
    assert not low.passed and "below the threshold 0.8" in low.reason


def test_a_fairness_limit_without_sensitive_columns_or_on_a_regression_is_a_config_error():
    policy = fairness_policy("demographic_parity_difference", 0.1)
    with pytest.raises(ConfigError, match=r"gate.fairness limits demographic_parity_difference.*--sensitive COLUMN"):
        decide("roc_auc", 0.9, policy, None, None)
    with pytest.raises(ConfigError, match=r"gate.fairness limits .*--sensitive"):
        require_sensitive(policy.fairness, [])
    with pytest.raises(ConfigError, match=r"gate.fairness.columns \['age'\] are not sensitive columns"):
        require_sensitive(FairnessLimit(metric="equalized_odds_difference", max=0.1, columns=["age"]), ["sex"])
    contract = DataContract(
        target="rate",
        task="regression",
        columns=[ColumnContract(name="rate", kind="numeric"), ColumnContract(name="x", kind="numeric")],
    )
    with pytest.raises(
        ConfigError,
        match=r"demographic_parity_difference is measured on binary classifiers only; model m is a regression",
    ):
        require_binary(policy.fairness, contract, "m")


def test_an_unknown_key_under_gate_fairness_is_an_error_naming_it(tmp_path: Path):
    config = tmp_path / "project.yaml"
    config.write_text("gate: {fairness: {metric: demographic_parity_difference, max: 0.1, colums: [sex]}}\n")
    with pytest.raises(
        ConfigError,
        match=r"project.yaml: unknown field 'gate.fairness.colums'; expected one of \['columns', 'max', 'metric'\]",
    ):
        run_config(config, "training")
    config.write_text("gate: {fairness: {metric: statistical_parity, max: 0.1}}\n")
    with pytest.raises(ConfigError, match=r"gate.fairness.metric"):
        run_config(config, "training")
