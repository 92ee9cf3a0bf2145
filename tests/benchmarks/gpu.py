"""GPU check: xgboost with device="cuda" on a GPU-labelled Dask worker, routed as `mlpipe sweep --gpu` routes trials.

A scheduler and two worker processes on 127.0.0.1: `cpu` (plain, all cores) and `gpu`
(`resources={"GPU": 1}`, one thread: one trial per GPU). The same training (`--rows` × 30 features,
a logistic label, 300 rounds of `hist`, depth 8) is submitted twice: under
`dask.annotate(resources={"GPU": 1})` with `device="cuda"`, exactly as the sweep submits a GPU
trial, and as a plain task with `device="cpu"`. Each task generates its data on the worker (no
transfer) and reports where it ran, the booster's device, its wall time and test AUC.

Checks: the annotated task ran on the `gpu` worker, its booster says cuda, and the AUCs agree
within 0.005; prints the GPU / CPU wall-time ratio. Needs an NVIDIA GPU and a CUDA build of
xgboost, so it is not part of `make bench` (CI has no GPU); `--device cpu` runs the same routing
on a machine without one.

    python -m tests.benchmarks.gpu [--rows 1000000] [--device cuda|cpu]
"""

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

import dask
import numpy as np
import xgboost as xgb
from distributed import Client, Nanny, Scheduler, SpecCluster

FEATURES = 30
ROUNDS = 300


def train(rows: int, device: str) -> dict[str, Any]:
    """Generate the data here, train, and say where and how it ran."""
    from distributed import get_worker

    rng = np.random.default_rng(0)
    features = rng.normal(size=(rows, FEATURES)).astype(np.float32)
    weights = np.random.default_rng(1).normal(size=FEATURES)
    label = (rng.random(rows) < 1 / (1 + np.exp(-(features @ weights)))).astype(np.float32)
    cut = int(rows * 0.8)
    train_matrix = xgb.QuantileDMatrix(features[:cut], label[:cut])
    test_matrix = xgb.DMatrix(features[cut:], label[cut:])
    params = {"objective": "binary:logistic", "tree_method": "hist", "max_depth": 8, "eta": 0.1}
    params |= {"eval_metric": "auc", "device": device, "nthread": os.cpu_count() or 1}
    started = time.perf_counter()
    booster = xgb.train(params, train_matrix, ROUNDS)
    seconds = time.perf_counter() - started
    auc = float(booster.eval(test_matrix).split(":")[-1])
    config = json.loads(booster.save_config())
    return {
        "worker": get_worker().name,
        "device": config["learner"]["generic_param"]["device"],
        "seconds": seconds,
        "auc": auc,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    args = parser.parse_args()
    print(f"xgboost {xgb.__version__}, CUDA build: {xgb.build_info().get('USE_CUDA')}")
    cores = os.cpu_count() or 1
    omp = {"OMP_NUM_THREADS": str(cores)}  # Dask's nanny sets 1, which would cap xgboost at one thread
    workers = {
        "cpu": {"cls": Nanny, "options": {"nthreads": 1, "host": "127.0.0.1", "name": "cpu", "env": omp}},
        "gpu": {"cls": Nanny, "options": {"nthreads": 1, "host": "127.0.0.1", "name": "gpu", "resources": {"GPU": 1}}},
    }
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": ":0"}}
    cluster = SpecCluster(scheduler=scheduler, workers=workers, silence_logs=logging.ERROR)
    with cluster, Client(cluster) as client:
        with dask.annotate(resources={"GPU": 1}):
            gpu = client.submit(train, args.rows, args.device, pure=False).result()
        cpu = client.submit(train, args.rows, "cpu", pure=False, workers=["cpu"]).result()
    print(f"{args.rows:,} rows × {FEATURES}, {ROUNDS} rounds, {cores} cores on the cpu worker")
    for label, result in (("GPU-annotated", gpu), ("plain", cpu)):
        print(
            f"  {label:<14} worker={result['worker']} device={result['device']} "
            f"{result['seconds']:.2f} s  test AUC {result['auc']:.4f}"
        )
    print(f"GPU / CPU wall time: {gpu['seconds'] / cpu['seconds']:.3f}")
    ok = gpu["worker"] == "gpu" and gpu["device"].startswith(args.device) and abs(gpu["auc"] - cpu["auc"]) < 0.005
    print(f"routed to the GPU worker, on {args.device}, same AUC: {ok}")
    if not ok:
        sys.exit(1)


if __name__ == "__main__":
    main()
