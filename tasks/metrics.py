"""Metrics for classification and regression, computed from a model's prediction frame."""

from typing import Any

import numpy as np
import pandas as pd

from mlpipe.errors import DataError
from mlpipe.tasks.contract import TaskType

LOWER_IS_BETTER = frozenset({"log_loss", "rmse", "mae"})
DEFAULT_PRIMARY = {"classification": "roc_auc", "regression": "rmse"}
PROBABILITY_PREFIX = "probability_"
SCORED_BY = ("model_name", "model_version")
"""The columns of a scoring output that name the model version behind each prediction."""


def probability_column(label: Any) -> str:
    """The name of the output column holding a class's probability: `probability_<label>`."""
    return f"{PROBABILITY_PREFIX}{label}"


def probability_columns(predictions: pd.DataFrame) -> list[str]:
    """The class-probability columns of a model's output, in class order."""
    return [c for c in predictions.columns if c.startswith(PROBABILITY_PREFIX)]


def compute_metrics(
    task: TaskType, truth: pd.Series, predictions: pd.DataFrame, classes: list[Any] | None
) -> dict[str, float]:
    """Scores of `predictions` (the pyfunc model's output) against the true target values."""
    from sklearn import metrics as skm

    if task == "regression":
        predicted = predictions["prediction"].to_numpy(dtype="float64")
        actual = truth.to_numpy(dtype="float64")
        return {
            "rmse": float(np.sqrt(skm.mean_squared_error(actual, predicted))),
            "mae": float(skm.mean_absolute_error(actual, predicted)),
            "r2": float(skm.r2_score(actual, predicted)),
        }
    assert classes is not None
    index = {label: i for i, label in enumerate(classes)}
    actual = truth.map(index).to_numpy()
    if np.isnan(actual.astype("float64")).any():
        unknown = sorted(set(truth.unique().tolist()) - set(classes), key=str)
        raise DataError(f"target '{truth.name}' has labels {unknown} the model never saw (it knows {classes})")
    actual = actual.astype("int64")
    probabilities = predictions[probability_columns(predictions)].to_numpy(dtype="float64")
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # float32 sums are 1 ± 1e-7
    predicted = probabilities.argmax(axis=1)
    binary = len(classes) == 2
    average = "binary" if binary else "macro"
    # One pass for precision, recall and F1, as each of scikit-learn's three functions would make alone.
    precision, recall, f1, _ = skm.precision_recall_fscore_support(actual, predicted, average=average, zero_division=0)
    scores = {
        "accuracy": np.mean(actual == predicted),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "log_loss": skm.log_loss(actual, probabilities, labels=list(range(len(classes)))),
    }
    if len(np.unique(actual)) > 1:
        if binary:
            scores["roc_auc"] = skm.roc_auc_score(actual, probabilities[:, 1])
        else:
            scores["roc_auc"] = skm.roc_auc_score(
                actual, probabilities, multi_class="ovr", labels=list(range(len(classes)))
            )
    return {name: float(value) for name, value in scores.items()}


def is_better(metric: str, candidate: float, reference: float, margin: float = 0.0) -> bool:
    """Whether `candidate` improves on `reference` by more than `margin`, in the metric's direction."""
    improvement = reference - candidate if metric in LOWER_IS_BETTER else candidate - reference
    return improvement > margin


def meets_threshold(metric: str, value: float, threshold: float | None) -> bool:
    """Whether `value` is at least as good as `threshold` in the metric's direction (no threshold: yes)."""
    if threshold is None:
        return True
    return value <= threshold if metric in LOWER_IS_BETTER else value >= threshold
