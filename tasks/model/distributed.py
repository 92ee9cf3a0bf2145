"""Distributed training: xgboost across every worker of the cluster that holds a partition, in step.

No process holds the training data whole: each worker reads and preprocesses the partitions it
is given, and the preprocessing itself is fitted from statistics computed per partition on the
workers and merged (each numeric column's median, weighted by the partitions' values, and the
most frequent categories by summed counts). The result is one scikit-learn pipeline like a
single-task training's, so the registered pyfunc scores raw rows the same way.
"""

import os
from collections.abc import Iterator
from contextlib import contextmanager
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


COLLECTIVE_TIMEOUT = "MLPIPE_COLLECTIVE_TIMEOUT"
"""The variable that sets how long (seconds, default 300) xgboost's workers wait for each other: a peer gone
mid-training fails the fit after that long, instead of hanging it."""


def collective_timeout() -> int:
    return int(os.environ.get(COLLECTIVE_TIMEOUT) or 300)


class WorkerLost(ConnectionError):
    """A worker left mid-training: a transient failure, so the task is retried on the workers that remain."""


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
    """The preprocessing (from merged statistics) and `estimator` trained with xgboost's collective on every worker
    holding data, the validation split giving its per-round metric; the estimator comes back as a plain xgboost model.

    Raises:
        WorkerLost: a worker left mid-training (transient: the task is retried on the workers that remain).
    """
    with cluster_client() as client:
        statistics = client.gather(
            client.map(part_statistics, partitions(splits.train), contract=contract, store=store)
        )
        fill, categories = merge_statistics(statistics)
        preprocessor = merged_preprocessor(fill, categories).fit(head_rows(splits.train, store, 100))
        workers = set(client.scheduler_info()["workers"])
        try:
            booster, history = _train_collective(client, estimator, preprocessor, splits, contract, store)
        except Exception as error:
            left = workers - set(client.scheduler_info()["workers"])
            if left:
                raise WorkerLost(f"worker(s) {sorted(left)} left during distributed training: {error}") from error
            raise
    trained = type(estimator)(**estimator.get_params())
    trained.load_model(bytearray(booster))  # the sklearn wrapper reads the classes from the booster
    trained.evals_result_ = {"validation_0": history}
    return preprocessor, trained


def _train_collective(
    client: "Client",
    estimator: "XGBModel",
    preprocessor: "ColumnTransformer",
    splits: SplitRefs,
    contract: DataContract,
    store: Datastore,
) -> tuple[bytes, dict[str, list[float]]]:
    """Preprocess each partition where Dask puts it, then train one booster per worker holding data, in step.

    xgboost.dask runs its tracker inside the Dask scheduler, and a worker lost mid-training makes the
    tracker abort that whole process: the team's scheduler. Here the tracker is a child process of
    this task, so a lost worker fails one fit, which is retried.
    """
    from distributed import wait

    width = len(preprocessor.get_feature_names_out())
    train, validation = (
        [client.submit(_part_matrix, preprocessor, p, contract, store, pure=False) for p in partitions(part)]
        for part in (splits.train, splits.validation)
    )
    wait(train + validation)
    holders = client.who_has(train)
    placed: dict[str, list[Any]] = {}
    for chunk in train:
        placed.setdefault(sorted(holders[chunk.key])[0], []).append(chunk)
    workers = sorted(placed)
    checked = {address: validation[index :: len(workers)] for index, address in enumerate(workers)}
    params = _booster_params(estimator, contract)
    rounds = estimator.get_num_boosting_rounds()
    with _tracker(len(workers), _host(client)) as tracker_args:
        runs = [
            client.submit(
                _train_here,
                {**tracker_args, "dmlc_task_id": f"[mlpipe-{rank}]:{address}"},
                params,
                rounds,
                estimator.early_stopping_rounds,
                placed[address],
                checked[address],
                width,
                workers=[address],
                allow_other_workers=False,
                pure=False,
            )
            for rank, address in enumerate(workers)
        ]
        results = client.gather(runs)
    return next(result for result in results if result is not None)


def _booster_params(estimator: "XGBModel", contract: DataContract) -> dict[str, Any]:
    params = {name: value for name, value in estimator.get_xgb_params().items() if value is not None}
    classes = contract.column(contract.target).allowed_values or []
    if contract.task == "classification" and len(classes) > 2:
        params.update(objective="multi:softprob", num_class=len(classes))
    return params


def _train_here(
    tracker_args: dict[str, Any],
    params: dict[str, Any],
    rounds: int,
    early_stopping_rounds: int | None,
    train: list[tuple[np.ndarray, np.ndarray]],
    validation: list[tuple[np.ndarray, np.ndarray]],
    width: int,
) -> tuple[bytes, dict[str, list[float]]] | None:
    """This worker's share of the training, in step with the others; the model and its curve from rank 0."""
    import xgboost as xgb
    from xgboost import collective

    def matrix(chunks: list[tuple[np.ndarray, np.ndarray]], ref: Any = None) -> Any:
        x = np.concatenate([c[0] for c in chunks]) if chunks else np.empty((0, width), np.float32)
        y = np.concatenate([c[1] for c in chunks]) if chunks else np.empty(0)
        return xgb.QuantileDMatrix(x, y, ref=ref)

    history: dict[str, dict[str, list[float]]] = {}
    with collective.CommunicatorContext(**tracker_args):
        dtrain = matrix(train)
        booster = xgb.train(
            params,
            dtrain,
            rounds,
            evals=[(matrix(validation, ref=dtrain), "validation")],
            evals_result=history,
            early_stopping_rounds=early_stopping_rounds,
            verbose_eval=False,
        )
        first = collective.get_rank() == 0
    return (bytes(booster.save_raw("json")), history["validation"]) if first else None


TRACKER = """
import json, os, sys, threading, time
from xgboost.tracker import RabitTracker

def exit_with_parent(parent=os.getppid()):
    while os.getppid() == parent:
        time.sleep(1)
    os._exit(1)

threading.Thread(target=exit_with_parent, daemon=True).start()
tracker = RabitTracker(n_workers=int(sys.argv[1]), host_ip=sys.argv[2], sortby="task", timeout=int(sys.argv[3]))
tracker.start()
print(json.dumps(tracker.worker_args()), flush=True)
tracker.wait_for()
"""
"""xgboost's rendezvous point, run as a process of its own (its failure cannot abort the process that started it)
that ends with the task that started it."""


@contextmanager
def _tracker(workers: int, host: str) -> Iterator[dict[str, Any]]:
    """The arguments workers join the tracker with; the tracker process is stopped on the way out."""
    import json
    import subprocess
    import sys

    process = subprocess.Popen(
        [sys.executable, "-c", TRACKER, str(workers), host, str(collective_timeout())],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise RuntimeError(f"xgboost's tracker did not start on {host} (exit status {process.wait()})")
        yield {**json.loads(line), "dmlc_timeout": collective_timeout()}
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()


def _host(client: "Client") -> str:
    """Where workers can reach this process: this worker's host, or else the scheduler's."""
    from distributed import get_worker
    from distributed.comm import get_address_host

    try:
        return get_address_host(get_worker().address)
    except ValueError:
        return get_address_host(client.scheduler_info()["address"])


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
