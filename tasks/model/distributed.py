"""Distributed training: xgboost.dask across every worker of the cluster, one chunk per partition.

No process holds the training data whole: each worker reads and preprocesses the partitions it
is given, and the preprocessing itself is fitted from statistics computed per partition on the
workers and merged (each numeric column's median, weighted by the partitions' values, and the
most frequent categories by summed counts). The result is one scikit-learn pipeline like a
single-task training's, so the registered pyfunc scores raw rows the same way.
"""

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.data.split import SplitRefs
from mlpipe.tasks.datasets import DatasetRef, head_rows, partitions, read_snapshot
from mlpipe.tasks.model.families import ModelSpec
from mlpipe.tasks.model.preprocessing import MAX_ONE_HOT, merged_preprocessor

if TYPE_CHECKING:
    import dask.array as da
    from distributed import Client
    from sklearn.compose import ColumnTransformer
    from xgboost import XGBModel

DISTRIBUTED_ROWS = 2_000_000
"""From this many training rows of a partitioned dataset, xgboost trains across the cluster by default."""


def trains_distributed(spec: ModelSpec, train: DatasetRef) -> bool:
    """Whether `spec` on `train` trains with xgboost.dask: asked for, or xgboost on a large partitioned dataset."""
    if spec.family != "xgboost" or spec.distributed is False:
        return False
    return bool(spec.distributed) or (train.partitioned and train.rows >= DISTRIBUTED_ROWS)


class PartStatistics(BaseModel):
    """What the preprocessing needs from one partition, in a form that merges."""

    medians: dict[str, tuple[float | None, int]]
    """Per numeric feature: its median here (None if all null) and how many values it has."""
    counts: dict[str, list[tuple[Any, int]]]
    """Per categorical feature: each value and its count here."""


def part_statistics(part: DatasetRef, contract: DataContract, store: Datastore) -> PartStatistics:
    numeric = [c.name for c in contract.features if c.kind == "numeric"]
    categorical = [c.name for c in contract.features if c.kind in ("string", "boolean")]
    frame = read_snapshot(part, store, numeric + categorical)
    return PartStatistics(
        medians={
            name: (float(frame[name].median()) if frame[name].notna().any() else None, int(frame[name].notna().sum()))
            for name in numeric
        },
        counts={name: [(v, int(k)) for v, k in frame[name].value_counts(dropna=True).items()] for name in categorical},
    )


def merge_statistics(parts: list[PartStatistics]) -> tuple[dict[str, float], dict[str, list[Any]]]:
    """Fill values (the median of partition medians, weighted by their values; 0 for a column with none) and the
    `MAX_ONE_HOT` most frequent categories of each column over all partitions."""
    fill = {name: _weighted_median([part.medians[name] for part in parts]) for name in parts[0].medians}
    categories = {}
    for name in parts[0].counts:
        totals: dict[Any, int] = {}
        for part in parts:
            for value, count in part.counts[name]:
                totals[value] = totals.get(value, 0) + count
        categories[name] = [value for value, _ in sorted(totals.items(), key=lambda item: -item[1])][:MAX_ONE_HOT]
    return fill, categories


def _weighted_median(medians: list[tuple[float | None, int]]) -> float:
    known = sorted((median, weight) for median, weight in medians if median is not None and weight)
    if not known:
        return 0.0
    half, seen = sum(weight for _, weight in known) / 2, 0
    for median, weight in known:
        seen += weight
        if seen >= half:
            return median
    return known[-1][0]


@contextmanager
def cluster_client() -> Iterator["Client"]:
    """A client of the cluster this runs on: from inside a task on a worker (its thread seceded while it waits), or
    the process's own client.

    Raises:
        ValueError: no cluster to train on.
    """
    from distributed import get_client, get_worker, worker_client

    try:
        get_worker()
    except ValueError:
        yield get_client()
        return
    with worker_client() as client:
        yield client


def fit_distributed(
    estimator: "XGBModel", splits: SplitRefs, contract: DataContract, store: Datastore
) -> tuple["ColumnTransformer", "XGBModel"]:
    """The preprocessing (from merged statistics) and `estimator` trained with xgboost.dask on every worker, the
    validation split giving its per-round metric; the estimator comes back as a plain xgboost model."""
    import xgboost.dask as dxgb
    from xgboost import XGBClassifier

    with cluster_client() as client:
        train_parts, validation_parts = partitions(splits.train), partitions(splits.validation)
        statistics = client.gather(client.map(part_statistics, train_parts, contract=contract, store=store))
        fill, categories = merge_statistics(statistics)
        preprocessor = merged_preprocessor(fill, categories).fit(head_rows(splits.train, store, 100))
        x_train, y_train = _matrix(preprocessor, train_parts, contract, store)
        x_validation, y_validation = _matrix(preprocessor, validation_parts, contract, store)
        cls = dxgb.DaskXGBClassifier if isinstance(estimator, XGBClassifier) else dxgb.DaskXGBRegressor
        params = {name: value for name, value in estimator.get_params().items() if name != "n_jobs"}
        trained = cls(**params)
        trained.client = client
        trained.fit(x_train, y_train, eval_set=[(x_validation, y_validation)], verbose=False)
    local = type(estimator)(**estimator.get_params())
    with tempfile.TemporaryDirectory() as scratch:  # the saved model carries the scikit-learn attributes too
        trained.save_model(Path(scratch) / "model.json")
        local.load_model(Path(scratch) / "model.json")
    local.evals_result_ = trained.evals_result()
    return preprocessor, local


def _matrix(
    preprocessor: "ColumnTransformer", parts: list[DatasetRef], contract: DataContract, store: Datastore
) -> tuple["da.Array", "da.Array"]:
    """Features and encoded target as Dask arrays, a chunk per partition, each read and transformed on a worker."""
    import dask
    import dask.array as da

    width = len(preprocessor.get_feature_names_out())
    target = np.float64 if contract.task == "regression" else np.int64
    chunks = [dask.delayed(_part_matrix, nout=2, pure=True)(preprocessor, part, contract, store) for part in parts]
    x = da.concatenate(
        [da.from_delayed(c[0], shape=(p.rows, width), dtype=np.float32) for c, p in zip(chunks, parts, strict=True)]
    )
    y = da.concatenate(
        [da.from_delayed(c[1], shape=(p.rows,), dtype=target) for c, p in zip(chunks, parts, strict=True)]
    )
    return x, y


def _part_matrix(
    preprocessor: "ColumnTransformer", part: DatasetRef, contract: DataContract, store: Datastore
) -> tuple[np.ndarray, np.ndarray]:
    from scipy import sparse

    from mlpipe.tasks.model.train import encode_target

    rows = read_snapshot(part, store)
    features = preprocessor.transform(rows)
    dense = features.toarray() if sparse.issparse(features) else np.asarray(features)
    labels, _ = encode_target(rows[contract.target], contract, part.source)
    return dense.astype(np.float32), labels
