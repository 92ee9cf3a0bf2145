"""Feature importance per input column, measured once at training and stored with the model.

Drift checks weigh each feature's drift by it (tasks/monitoring/drift.py). Permutation importance
on the raw input columns means the same for every model family (xgboost, histogram boosting,
random forest, linear) and for one-hot or scaled columns alike: a column's importance is how much
the model's holdout loss grows when that column's values are shuffled, as scikit-learn's
`permutation_importance` defines it. A capped, seeded sample keeps it to about a second.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel
from scipy import sparse

from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.model.preprocessing import input_blocks
from mlpipe.tasks.model.pyfunc import TabularModel
from mlpipe.tasks.model.train import encode_target

IMPORTANCE_ARTIFACT = "feature_importance.json"
SAMPLE_ROWS = 2_000
"""Holdout rows shuffled per column: enough to rank features, few enough to cost about a second."""
REPEATS = 5


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
    model: TabularModel, rows: pd.DataFrame, contract: DataContract, seed: int, source: str
) -> FeatureImportance:
    """Shuffle each input column of a seeded sample of `rows` (the holdout) and measure the loss it adds.

    The sample is preprocessed once and each input column's block of outputs is shuffled (see
    `input_blocks`): the same as shuffling the raw column and preprocessing again, without paying
    the preprocessing for every shuffle.
    """
    started = time.perf_counter()
    sample = rows.sample(n=SAMPLE_ROWS, random_state=seed) if len(rows) > SAMPLE_ROWS else rows
    target, _ = encode_target(sample[contract.target], contract, source)
    preprocessor, estimator = model.pipeline[0], model.pipeline[-1]
    matrix = preprocessor.transform(sample[contract.feature_names])
    columns = matrix.tocsc() if sparse.issparse(matrix) else matrix
    loss = _loss(model)
    blocks = input_blocks(preprocessor)
    rng = np.random.default_rng(seed)
    growth = {name: np.zeros(REPEATS) for name in contract.feature_names}
    with _one_thread(estimator):
        baseline = loss(estimator, matrix, target)
        for repeat in range(REPEATS):
            for name, changes in growth.items():
                shuffled = _shuffled(columns, blocks[name], rng.permutation(len(sample)))
                changes[repeat] = loss(estimator, shuffled, target) - baseline
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
    if sparse.issparse(columns):
        return sparse.hstack([columns[:, : block.start], columns[order, block], columns[:, block.stop :]], format="csr")
    shuffled = columns.copy()
    shuffled[:, block] = columns[order, block]
    return shuffled


def _loss(model: TabularModel) -> Callable[[Any, Any, np.ndarray], float]:
    """The model's loss on its own output: log loss over every class, or squared error.

    Log loss rather than accuracy: on an imbalanced target most shuffles change few predicted
    labels, so accuracy would call nearly every feature unimportant. Computed in numpy: scikit-learn's
    `log_loss` validates its input for longer than a small model takes to predict.
    """
    if model.task == "regression":
        return lambda estimator, x, y: float(np.mean((estimator.predict(x) - y) ** 2))

    def log_loss(estimator: Any, x: Any, y: np.ndarray) -> float:
        chosen = np.asarray(estimator.predict_proba(x))[np.arange(len(y)), y]
        return float(-np.mean(np.log(np.clip(chosen, 1e-15, 1.0))))

    return log_loss


@contextmanager
def _one_thread(estimator: Any) -> Iterator[None]:
    """Predict with one thread: a few thousand rows gain nothing from more, and waiting on them costs (4× here)."""
    threads = estimator.get_params().get("n_jobs", "absent")
    if threads != "absent":
        estimator.set_params(n_jobs=1)
    try:
        yield
    finally:
        if threads != "absent":
            estimator.set_params(n_jobs=threads)


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
