"""The gate's rule, tested on numbers alone: threshold, margin, direction, ties."""

import pytest

from mlpipe.blocks import GatePolicy
from mlpipe.tasks.metrics import is_better
from mlpipe.tasks.registry.gate import Champion, decide

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
