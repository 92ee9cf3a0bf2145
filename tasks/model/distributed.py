"""Distributed training: xgboost across the cluster's workers, each given a share of the partitions, in step.

No process holds the training data whole: each worker reads and preprocesses the partitions it
is given, one at a time, and the preprocessing itself is fitted from statistics computed per partition on the
workers and merged (each numeric column's median, weighted by the partitions' values, and the
most frequent categories by summed counts). The result is one scikit-learn pipeline like a
single-task training's, so the registered pyfunc scores raw rows the same way.
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from mlpipe.blocks.datastore import Datastore
from mlpipe.tasks.cluster import cluster_client
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
    """Whether `spec` on `train` trains across the cluster: asked for, or xgboost on a large partitioned dataset."""
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
    """Give each worker its share of the partitions and train one booster per worker, in step.

    A worker reads its partitions from the datastore one at a time, straight into xgboost's
    quantized matrix, so it holds that matrix (a byte or so per value) and one partition, never
    its share of the data as floats. xgboost.dask runs its tracker inside the Dask scheduler, and a
    worker lost mid-training makes the tracker abort that whole process: the team's scheduler. Here
    the tracker is a child process of this task, so a lost worker fails one fit, which is retried.
    """
    train, validation = partitions(splits.train), partitions(splits.validation)
    workers = sorted(client.scheduler_info()["workers"])[: len(train)]
    params = _booster_params(estimator, contract)
    with _tracker(len(workers), _host(client)) as tracker_args:
        runs = [
            client.submit(
                _train_here,
                {**tracker_args, "dmlc_task_id": f"[mlpipe-{rank}]:{address}"},
                TrainingShare(
                    train=train[rank :: len(workers)],
                    validation=validation[rank :: len(workers)],
                    preprocessor=preprocessor,
                    contract=contract,
                    store=store,
                ),
                params,
                estimator.get_num_boosting_rounds(),
                estimator.early_stopping_rounds,
                workers=[address],
                allow_other_workers=False,
                pure=False,
            )
            for rank, address in enumerate(workers)
        ]
        results = client.gather(runs)
    return next(result for result in results if result is not None)


class TrainingShare(BaseModel):
    """The partitions one worker trains and validates on, and how to turn their rows into features."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    train: list[DatasetRef]
    validation: list[DatasetRef]
    preprocessor: Any
    contract: DataContract
    store: Datastore

    def matrix(self, parts: list[DatasetRef], ref: Any = None) -> Any:
        """xgboost's quantized matrix of `parts`, read and preprocessed a partition at a time."""
        import xgboost as xgb

        share = self
        width = len(self.preprocessor.get_feature_names_out())

        class Partitions(xgb.DataIter):
            """`parts` one by one; a worker with no rows of this split still takes part, with an empty one."""

            def __init__(self) -> None:
                self._chunks: list[DatasetRef | None] = [*parts] or [None]
                self._next = 0
                super().__init__()

            def next(self, input_data: Callable[..., None]) -> bool:
                if self._next == len(self._chunks):
                    return False
                part = self._chunks[self._next]
                if part is None:
                    input_data(data=np.empty((0, width), np.float32), label=np.empty(0))
                else:
                    x, y = _part_matrix(share.preprocessor, part, share.contract, share.store)
                    input_data(data=x, label=y)
                self._next += 1
                return True

            def reset(self) -> None:
                self._next = 0

        return xgb.QuantileDMatrix(Partitions(), ref=ref)


def _booster_params(estimator: "XGBModel", contract: DataContract) -> dict[str, Any]:
    params = {name: value for name, value in estimator.get_xgb_params().items() if value is not None}
    classes = contract.column(contract.target).allowed_values or []
    if contract.task == "classification" and len(classes) > 2:
        params.update(objective="multi:softprob", num_class=len(classes))
    return params


def _train_here(
    tracker_args: dict[str, Any],
    share: TrainingShare,
    params: dict[str, Any],
    rounds: int,
    early_stopping_rounds: int | None,
) -> tuple[bytes, dict[str, list[float]]] | None:
    """This worker's share of the training, in step with the others; the model and its curve from rank 0."""
    import xgboost as xgb
    from xgboost import collective

    history: dict[str, dict[str, list[float]]] = {}
    with collective.CommunicatorContext(**tracker_args):
        dtrain = share.matrix(share.train)
        booster = xgb.train(
            params,
            dtrain,
            rounds,
            evals=[(share.matrix(share.validation, ref=dtrain), "validation")],
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
) -> tuple[Any, np.ndarray]:
    """A partition's features, as the registered pipeline will hand them to xgboost when it scores (sparse stays
    sparse: xgboost reads a sparse matrix's absent entries as missing, so training must see them the same way),
    and its encoded target."""
    from mlpipe.tasks.model.train import encode_target

    rows = read_snapshot(part, store)
    labels, _ = encode_target(rows[contract.target], contract, part.source)
    return preprocessor.transform(rows), labels
