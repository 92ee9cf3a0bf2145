"""Quality signals of the drift check: what is reported about the current data beyond drift."""

import pandas as pd
import pytest

from mlpipe.blocks.drift import DriftPolicy
from mlpipe.tasks.monitoring.drift_check import quality_signals
from mlpipe.tasks.monitoring.profiles import Baseline

pytestmark = pytest.mark.unit


def unseen(reference: pd.DataFrame, current: pd.DataFrame, top_categories: int) -> list[str]:
    baseline = Baseline.of(reference, DriftPolicy(top_categories=top_categories))
    found = quality_signals(baseline, baseline.profile(reference, seed=0), baseline.profile(current, seed=0))
    return [s.detail for s in found if s.signal == "unseen categories"]


def test_a_category_the_reference_folded_into_other_is_not_called_unseen():
    """With more categories than the profile keeps, the reference's rare ones were seen in training all the same."""
    reference = pd.DataFrame({"shop": [f"s{i:03d}" for i in range(150) for _ in range(150 - i)]})
    current = pd.DataFrame({"shop": ["s140", "s149", "s000"] * 50})
    assert unseen(reference, current, top_categories=100) == []


def test_a_category_training_never_had_is_called_unseen():
    reference = pd.DataFrame({"shop": ["a", "b", "c"] * 50})
    current = pd.DataFrame({"shop": ["a", "b", "atlantis"] * 50})
    assert unseen(reference, current, top_categories=100) == ["1 unseen, e.g. ['atlantis']"]
