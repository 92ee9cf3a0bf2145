"""Feature importance per input column, measured once at training and stored with the model.

Drift checks weigh each feature's drift by it (tasks/monitoring/drift.py). Permutation importance
on the raw input columns means the same for every model family (xgboost, histogram boosting,
random forest, linear) and for one-hot or scaled columns alike: a column's importance is how much
the model's holdout loss grows when that column's values are shuffled, as scikit-learn's
`permutation_importance` defines it. A capped, seeded sample keeps it to about a second.
"""

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.model.train import encode_target

if TYPE_CHECKING:
    from mlpipe.tasks.model.pyfunc import TabularModel

IMPORTANCE_ARTIFACT = "feature_importance.json"
SAMPLE_ROWS = 2_000
"""Holdout rows shuffled per column: enough to rank features, few enough to cost about a second."""
REPEATS = 5
BATCH_CELLS = 4_000_000
"""Preprocessed cells (≈ 32 MB as float64) scored per prediction call: shuffled copies of the sample are
stacked up to this size, because one call over many rows costs far less than many calls over few."""


class FeatureImportance(BaseModel):
    """How much the model's holdout loss grows when each input column is shuffled, and how that was measured."""

    method: Literal["permutation"] = "permutation"
    loss: Literal["log loss", "squared error"]
    rows: int
    repeats: int
    seed: int
    seconds: float
    importances: dict[str, float]
    """Mean growth of the loss per input column (negative: shuffling happened to help, i.e. noise)."""
    spread: dict[str, float]
    """Standard deviation of that growth over the repeats."""

    def describe(self) -> str:
        """The method in words, for reports: what a weight of this model's features is based on."""
        return (
            f"permutation importance ({self.loss} on {self.rows:,} holdout rows, "
            f"{self.repeats} repeats, seed {self.seed})"
        )


def permutation_importance_of(
    model: "TabularModel", rows: pd.DataFrame, contract: DataContract, seed: int, source: str
) -> FeatureImportance:
    """Shuffle each input column of a seeded sample of `rows` (the holdout) and measure the loss it adds.

    The sample is preprocessed once and each input column's block of outputs is shuffled (see
    `input_blocks`): the same as shuffling the raw column and preprocessing again, without paying
    the preprocessing for every shuffle. The shuffled copies are stacked and scored together
    (`BATCH_CELLS` at a time); each row's prediction, hence each loss, is the same as scoring
    every copy on its own.
    """
    from scipy import sparse

    from mlpipe.tasks.model.preprocessing import input_blocks

    started = time.perf_counter()
    sample = rows.sample(n=SAMPLE_ROWS, random_state=seed) if len(rows) > SAMPLE_ROWS else rows
    target, _ = encode_target(sample[contract.target], contract, source)
    preprocessor, estimator = model.pipeline[0], model.pipeline[-1]
    matrix = preprocessor.transform(sample[contract.feature_names])
    columns = matrix.tocsc() if sparse.issparse(matrix) else matrix
    output, loss = _output(model), _loss(model)
    blocks = input_blocks(preprocessor)
    rng = np.random.default_rng(seed)
    names = contract.feature_names
    growth = {name: np.zeros(REPEATS) for name in names}
    baseline = loss(output(estimator, matrix), target)
    per_call = max(1, BATCH_CELLS // max(1, matrix.shape[0] * matrix.shape[1]))
    stack = sparse.vstack if sparse.issparse(matrix) else np.vstack
    for repeat in range(REPEATS):
        orders = {name: rng.permutation(len(sample)) for name in names}
        for first in range(0, len(names), per_call):
            batch = names[first : first + per_call]
            outputs = output(estimator, stack([_shuffled(columns, blocks[name], orders[name]) for name in batch]))
            for index, name in enumerate(batch):
                rows_of_name = slice(index * len(sample), (index + 1) * len(sample))
                growth[name][repeat] = loss(outputs[rows_of_name], target) - baseline
    return FeatureImportance(
        loss="squared error" if model.task == "regression" else "log loss",
        rows=len(sample),
        repeats=REPEATS,
        seed=seed,
        seconds=time.perf_counter() - started,
        importances={name: float(changes.mean()) for name, changes in growth.items()},
        spread={name: float(changes.std()) for name, changes in growth.items()},
    )


def _shuffled(columns: Any, block: slice, order: np.ndarray) -> Any:
    """The preprocessed rows with one input column's block of outputs in `order` (sparse stays sparse)."""
    from scipy import sparse

    if sparse.issparse(columns):
        return sparse.hstack([columns[:, : block.start], columns[order, block], columns[:, block.stop :]], format="csr")
    shuffled = columns.copy()
    shuffled[:, block] = columns[order, block]
    return shuffled


def _output(model: "TabularModel") -> Callable[[Any, Any], np.ndarray]:
    """What the loss is computed on: predicted values for regression, class probabilities otherwise."""
    if model.task == "regression":
        return lambda estimator, x: np.asarray(estimator.predict(x))
    return lambda estimator, x: np.asarray(estimator.predict_proba(x))


def _loss(model: "TabularModel") -> Callable[[np.ndarray, np.ndarray], float]:
    """The model's loss on its own output: log loss over every class, or squared error.

    Log loss rather than accuracy: on an imbalanced target most shuffles change few predicted
    labels, so accuracy would call nearly every feature unimportant. Computed in numpy: scikit-learn's
    `log_loss` validates its input for longer than a small model takes to predict.
    """
    if model.task == "regression":
        return lambda predicted, y: float(np.mean((predicted - y) ** 2))

    def log_loss(probabilities: np.ndarray, y: np.ndarray) -> float:
        chosen = probabilities[np.arange(len(y)), y]
        return float(-np.mean(np.log(np.clip(chosen, 1e-15, 1.0))))

    return log_loss


def log_importance(importance: FeatureImportance, run_id: str, tracking: MlflowConnection) -> None:
    """Store the importance with the model's training run (an artifact), and its cost as a metric."""
    from mlflow.entities import Metric

    client = tracking.client()
    client.log_dict(run_id, importance.model_dump(mode="json"), IMPORTANCE_ARTIFACT)
    client.log_batch(run_id, metrics=[Metric("importance_seconds", importance.seconds, int(time.time() * 1000), 0)])


def load_importance(run_id: str | None, tracking: MlflowConnection) -> FeatureImportance | None:
    """The importance stored with a model's run; None for a model logged without one (before it was recorded)."""
    if run_id is None:
        return None
    client = tracking.client()
    if IMPORTANCE_ARTIFACT not in {artifact.path for artifact in client.list_artifacts(run_id)}:
        return None
    import mlflow

    with tracking.session():
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{IMPORTANCE_ARTIFACT}")
    return FeatureImportance.model_validate_json(text)
