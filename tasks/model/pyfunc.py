"""The served model: preprocessing + estimator as an MLflow pyfunc that takes raw rows."""

from typing import Any

import numpy as np
import pandas as pd
from mlflow.pyfunc import PythonModel
from sklearn.pipeline import Pipeline

from mlpipe.tasks.contract import TaskType
from mlpipe.tasks.metrics import probability_column


class TabularModel(PythonModel):
    """What is registered and served: preprocessing + estimator, taking raw rows.

    `predict` returns a frame with `prediction` (original labels for classifiers) and, for
    classifiers, one `probability_<label>` column per class.
    """

    def __init__(self, pipeline: Pipeline, task: TaskType, classes: list[Any] | None) -> None:
        self.pipeline = pipeline
        self.task = task
        self.classes = classes

    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> pd.DataFrame:
        return predict_frame(self.pipeline, self.task, self.classes, model_input)


def predict_frame(pipeline: Pipeline, task: TaskType, classes: list[Any] | None, rows: pd.DataFrame) -> pd.DataFrame:
    """Predictions (and class probabilities) for raw rows."""
    raw = pipeline.predict(rows) if task == "regression" else pipeline.predict_proba(rows)
    return output_frame(raw, task, classes, rows.index)


def output_frame(raw: np.ndarray, task: TaskType, classes: list[Any] | None, index: Any = None) -> pd.DataFrame:
    """The served output from an estimator's raw output: predictions, or class probabilities.

    A one-dimensional output of a classifier is the positive class's probability (xgboost's
    booster gives that for binary problems).
    """
    if task == "regression":
        return pd.DataFrame({"prediction": np.asarray(raw, dtype="float64")}, index=index)
    assert classes is not None
    probabilities = np.asarray(raw)
    if probabilities.ndim == 1:
        probabilities = np.column_stack([1.0 - probabilities, probabilities])
    frame = pd.DataFrame(
        {probability_column(label): probabilities[:, i] for i, label in enumerate(classes)}, index=index
    )
    frame.insert(0, "prediction", np.asarray(classes)[probabilities.argmax(axis=1)])
    return frame
