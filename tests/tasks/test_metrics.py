"""Metrics: multiclass scores, unknown labels and metrics, keys of artifacts."""

import pandas as pd
import pytest

from mlpipe.blocks import GatePolicy
from mlpipe.errors import ConfigError, DataError
from mlpipe.tasks.metrics import meets_threshold, probability_column, probability_columns

pytestmark = pytest.mark.unit


def test_multiclass_metrics_and_unknown_primary_metric():
    from mlpipe.tasks.metrics import compute_metrics
    from mlpipe.tasks.registry.gate import primary_metric

    truth = pd.Series(["a", "b", "c", "a"])
    predictions = pd.DataFrame(
        {"prediction": ["a", "b", "b", "a"], "probability_a": [0.8, 0.1, 0.1, 0.7],
         "probability_b": [0.1, 0.8, 0.6, 0.2], "probability_c": [0.1, 0.1, 0.3, 0.1]}
    )  # fmt: skip
    scores = compute_metrics("classification", truth, predictions, ["a", "b", "c"])
    assert scores["accuracy"] == 0.75
    assert scores["roc_auc"] == 1.0  # every true class ranks first in its own column
    with pytest.raises(DataError, match=r"target 'label' has labels \['d'\] the model never saw"):
        compute_metrics("classification", pd.Series(["a", "b", "d", "a"], name="label"), predictions, ["a", "b", "c"])
    with pytest.raises(ConfigError, match="'rmse' is not a classification metric"):
        primary_metric(GatePolicy(primary_metric="rmse"), "classification", scores)


def test_artifact_keys_are_valid_for_any_model_name():
    from mlpipe.tasks.links import artifact_key

    assert artifact_key("Team/Credit.Default_v2") == "team-credit-default-v2"


@pytest.mark.parametrize(
    ("metric", "value", "threshold", "meets"),
    [
        ("roc_auc", 0.80, 0.80, True),
        ("roc_auc", 0.79, 0.80, False),
        ("rmse", 9.0, 10.0, True),
        ("rmse", 11.0, 10.0, False),
        ("log_loss", 0.3, 0.3, True),
        ("accuracy", 0.1, None, True),
    ],
)
def test_a_threshold_is_met_in_the_metrics_direction(metric: str, value: float, threshold: float | None, meets: bool):
    """One rule for the gate's threshold and the performance check's degradation."""
    assert meets_threshold(metric, value, threshold) is meets


def test_probability_columns_are_named_after_their_class():
    frame = pd.DataFrame({"prediction": [1], probability_column(0): [0.2], probability_column(1): [0.8]})
    assert probability_columns(frame) == ["probability_0", "probability_1"]
