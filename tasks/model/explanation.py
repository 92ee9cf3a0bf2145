"""Explanations: how much each input column moved the model's output, per row and over the test set.

For xgboost the contributions are TreeSHAP values computed by xgboost itself (`pred_contribs`):
exact, and with the bias they add up to the model's margin (the log-odds of the positive class
for a binary classifier, the prediction for a regression). For linear models they are
coefficient × preprocessed value (numeric inputs are scaled around their training mean, or to
[0, 1] by their bounds for a differentially private model; a category adds its own coefficient),
which adds up to the margin with the intercept as the bias.
Each input column's block of preprocessed columns (a one-hot block) is summed back to it:
contributions are additive, so the sum is exact. Forests and histogram boosting have no cheap
exact contributions: their global ranking is the permutation importance measured in the same
evaluation (importance.py), and they have no per-row explanation.
"""

import time
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from mlpipe.errors import ConfigError
from mlpipe.tasks.model.importance import FeatureImportance

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

    from mlpipe.tasks.model.pyfunc import TabularModel

EXPLANATION_ARTIFACT = "explanation.json"
EXPLANATION_PLOT = "evaluation/explanation.png"
EXPLAINED_ROWS = 128
"""Test rows explained at evaluation, fewer than permutation importance shuffles: exact TreeSHAP costs
about 0.7 ms a row for 300 trees of depth 6 on two cores (1.5 ms when they are busy), and evaluation
runs at every training. The features that matter rank the same from a hundred rows as from thousands."""
PLOTTED_FEATURES = 20
BIAS, MARGIN = "bias", "margin"


class Explanation(BaseModel):
    """Global importance of each input column on a seeded sample of the test set, and how it was measured."""

    method: Literal["tree SHAP", "linear", "permutation"]
    rows: int
    seed: int
    seconds: float
    """What computing it took (0 for `permutation`: the importance measured for drift checks is reused)."""
    importances: dict[str, float]
    """Per input column, largest first: the mean |contribution| to the margin, or for `permutation`
    the growth of the loss when the column is shuffled."""

    def describe(self) -> str:
        """The method in words, for plots and reports."""
        if self.method == "permutation":
            return f"permutation importance on {self.rows:,} test rows (seed {self.seed})"
        return f"mean |{self.method} contribution| to the margin on {self.rows:,} test rows (seed {self.seed})"

    def table(self) -> list[dict[str, Any]]:
        """One row per input column, largest first, for a Prefect table artifact."""
        return [
            {"rank": rank, "feature": name, "importance": round(value, 6)}
            for rank, (name, value) in enumerate(self.importances.items(), start=1)
        ]


def unexplained(model: "TabularModel") -> str | None:
    """Why `contributions` cannot explain `model`, or None when it can."""
    from sklearn.linear_model import LinearRegression, LogisticRegression, Ridge

    estimator = model.pipeline[-1]
    linear = LogisticRegression | Ridge | LinearRegression  # diffprivlib's private models subclass the first and last
    if not (hasattr(estimator, "get_booster") or isinstance(estimator, linear)):
        return f"{type(estimator).__name__} has no exact per-row contributions; xgboost and linear models have them"
    if model.task == "classification" and len(model.classes or []) > 2:
        return f"the model has {len(model.classes or [])} classes; contributions are explained for two classes at most"
    return None


def contributions(model: "TabularModel", rows: pd.DataFrame) -> pd.DataFrame:
    """Each row's contribution per input column, the `bias`, and the model's own `margin` they add up to.

    Raises:
        ConfigError: the model's family or number of classes has no exact contributions (`unexplained`).
    """
    from mlpipe.tasks.model.preprocessing import input_blocks

    reason = unexplained(model)
    if reason:
        raise ConfigError(reason)
    preprocessor, estimator = model.pipeline[0], model.pipeline[-1]
    matrix = preprocessor.transform(rows)
    per_output, bias, margin = (
        _xgboost(estimator, matrix) if hasattr(estimator, "get_booster") else _linear(estimator, matrix)
    )
    blocks = input_blocks(preprocessor)
    frame = pd.DataFrame({name: per_output[:, block].sum(axis=1) for name, block in blocks.items()}, index=rows.index)
    return frame.assign(**{BIAS: bias, MARGIN: margin})


def _xgboost(estimator: Any, matrix: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """TreeSHAP values by xgboost (the last column is the bias) and the margin, over the trees `predict` uses."""
    from xgboost import DMatrix

    try:
        rounds = (0, estimator.best_iteration + 1)  # trained with early stopping: predict stops there too
    except AttributeError:
        rounds = (0, 0)
    data = DMatrix(matrix, missing=estimator.missing)
    booster = estimator.get_booster()
    values = booster.predict(data, pred_contribs=True, iteration_range=rounds)
    return values[:, :-1], values[:, -1], booster.predict(data, output_margin=True, iteration_range=rounds)


def _linear(estimator: Any, matrix: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Coefficient × preprocessed value, the intercept as the bias, and the decision function as the margin."""
    from scipy import sparse

    coefficients = np.ravel(estimator.coef_)
    per_output = matrix.multiply(coefficients).toarray() if sparse.issparse(matrix) else matrix * coefficients
    margin = (
        estimator.decision_function(matrix) if hasattr(estimator, "decision_function") else estimator.predict(matrix)
    )
    return per_output, np.full(matrix.shape[0], float(np.ravel(estimator.intercept_)[0])), np.asarray(margin)


def explain(
    model: "TabularModel", rows: pd.DataFrame, features: list[str], seed: int, importance: FeatureImportance
) -> Explanation:
    """Mean |contribution| per input column on a seeded sample of `rows` (the test split); for a model
    with no exact contributions, the permutation `importance` already measured on the same split.
    """
    started = time.perf_counter()
    if unexplained(model):
        ranked = dict(sorted(importance.importances.items(), key=lambda item: item[1], reverse=True))
        return Explanation(method="permutation", rows=importance.rows, seed=seed, seconds=0.0, importances=ranked)
    sample = rows.sample(n=EXPLAINED_ROWS, random_state=seed) if len(rows) > EXPLAINED_ROWS else rows
    mean_sizes = contributions(model, sample[features])[features].abs().mean().sort_values(ascending=False)
    return Explanation(
        method="tree SHAP" if hasattr(model.pipeline[-1], "get_booster") else "linear",
        rows=len(sample),
        seed=seed,
        seconds=time.perf_counter() - started,
        importances={str(name): float(value) for name, value in mean_sizes.items()},
    )


def log_explanation(explanation: Explanation, run_id: str, client: "MlflowClient") -> None:
    """Store the explanation with the model's run (the registered version points to it), its bar plot and its cost."""
    from mlflow.entities import Metric

    client.log_dict(run_id, explanation.model_dump(mode="json"), EXPLANATION_ARTIFACT)
    client.log_figure(run_id, explanation_plot(explanation), EXPLANATION_PLOT)
    client.log_batch(run_id, metrics=[Metric("explanation_seconds", explanation.seconds, int(time.time() * 1000), 0)])


def explanation_plot(explanation: Explanation) -> "Figure":
    """Horizontal bars of the most important input columns, the largest on top."""
    from matplotlib.figure import Figure

    shown = list(explanation.importances.items())[:PLOTTED_FEATURES]
    figure = Figure(figsize=(7, 1.2 + 0.3 * len(shown)), layout="constrained")
    axis = figure.subplots()
    axis.barh([name for name, _ in reversed(shown)], [value for _, value in reversed(shown)])
    axis.set(title="Feature importance on the test set", xlabel=explanation.describe())
    return figure
