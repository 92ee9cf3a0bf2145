"""GPU figures: xgboost on a GPU worker against a CPU worker, and mlpipe's GPU path against raw xgboost.

A scheduler and two worker processes on 127.0.0.1: `cpu` (every core of the machine) and `gpu`
(`resources={"GPU": 1}`, one thread: one training per GPU). Each worker generates the same data
(`--rows` × 50 float32 features, a logistic label, seeded) and times only the training:

1. mlpipe's GPU path: the estimator mlpipe builds for `family: xgboost` (defaults: 300 rounds of
   `hist`, depth 6) set for `device: cuda` and submitted in the context `placed()` gives it, as the
   training and sweep flows do; it must land on the `gpu` worker with the booster on cuda.
2. raw xgboost on the same worker and data: `QuantileDMatrix` + `xgboost.train(device="cuda")` with
   the same parameters (matrix construction is timed in both, as `fit` builds one).
3. mlpipe's CPU path on the `cpu` worker: the same estimator with `n_jobs` = all cores.

Goals: CPU / GPU ≥ 8 and mlpipe GPU / raw GPU ≤ 1.10, test AUCs within 0.005. Exits 1 if a goal
or the routing fails; with no CUDA GPU visible it says so and exits 0 (CI has none). Not part of
`make bench`. Run on a machine with an NVIDIA GPU:

    python -m tests.benchmarks.gpu [--rows 10000000] [--features 50]
"""

import argparse
import json
import logging
import os
import sys
import time
import warnings
from typing import Any

import numpy as np
import xgboost as xgb
from distributed import Client, Nanny, Scheduler, SpecCluster

GOAL_SPEEDUP = 8.0
GOAL_OVERHEAD = 1.10


def make_data(rows: int, features: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The same seeded data on every worker: 80 % to train, 20 % to test."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal(size=(rows, features), dtype=np.float32)
    weights = np.random.default_rng(1).normal(size=features).astype(np.float32)
    y = (rng.random(rows, dtype=np.float32) < 1 / (1 + np.exp(-(x @ weights)))).astype(np.float32)
    cut = int(rows * 0.8)
    return x[:cut], y[:cut], x[cut:], y[cut:]


def booster_device(booster: xgb.Booster) -> str:
    return str(json.loads(booster.save_config())["learner"]["generic_param"]["device"])


def test_auc(booster: xgb.Booster, x: np.ndarray, y: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    booster.set_param({"device": "cpu"})
    return float(roc_auc_score(y, booster.inplace_predict(x)))


def mlpipe_fit(rows: int, features: int, device: str) -> dict[str, Any]:
    """mlpipe's estimator for xgboost on `device`, fitted on this worker's copy of the data."""
    from distributed import get_worker

    from mlpipe.flows.common import placed
    from mlpipe.tasks.model.families import ModelSpec, build_estimator

    x, y, x_test, y_test = make_data(rows, features)
    spec, _ = placed(ModelSpec(family="xgboost"), device)  # type: ignore[arg-type]
    estimator = build_estimator(spec, "classification", n_jobs=os.cpu_count() or 1)
    started = time.perf_counter()
    estimator.fit(x, y)
    seconds = time.perf_counter() - started
    booster = estimator.get_booster()
    device_used = booster_device(booster)
    return {
        "worker": get_worker().name,
        "device": device_used,
        "seconds": seconds,
        "auc": test_auc(booster, x_test, y_test),
    }


def raw_fit(rows: int, features: int) -> dict[str, Any]:
    """Plain `xgboost.train(device="cuda")` with mlpipe's xgboost defaults, on this worker's copy of the data."""
    from distributed import get_worker

    from mlpipe.tasks.model.families import family_defaults

    _, defaults = family_defaults("xgboost", "classification", 42, n_jobs=os.cpu_count() or 1)
    params = {
        "objective": "binary:logistic",
        "tree_method": defaults["tree_method"],
        "max_depth": defaults["max_depth"],
        "eta": defaults["learning_rate"],
        "seed": defaults["random_state"],
        "device": "cuda",
    }
    x, y, x_test, y_test = make_data(rows, features)
    started = time.perf_counter()
    booster = xgb.train(params, xgb.QuantileDMatrix(x, y), num_boost_round=defaults["n_estimators"])
    seconds = time.perf_counter() - started
    device_used = booster_device(booster)
    return {
        "worker": get_worker().name,
        "device": device_used,
        "seconds": seconds,
        "auc": test_auc(booster, x_test, y_test),
    }


def visible_gpu() -> str | None:
    """Why there is no usable GPU, or None when xgboost trains on cuda here."""
    if not xgb.build_info().get("USE_CUDA"):
        return "this xgboost build has no CUDA support"
    x, y, _, _ = make_data(1_000, 5)
    with warnings.catch_warnings():  # xgboost warns as it falls back to the CPU
        warnings.simplefilter("ignore")
        booster = xgb.train({"device": "cuda", "tree_method": "hist"}, xgb.DMatrix(x, y), num_boost_round=1)
    return None if booster_device(booster).startswith("cuda") else "no CUDA GPU is visible"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--features", type=int, default=50)
    args = parser.parse_args()
    missing = visible_gpu()
    if missing:
        print(f"skipped: {missing}; run this on a machine with an NVIDIA GPU and a CUDA build of xgboost")
        return
    from mlpipe.flows.common import placed
    from mlpipe.tasks.model.families import ModelSpec

    cores = os.cpu_count() or 1
    omp = {"OMP_NUM_THREADS": str(cores)}  # Dask's nanny sets 1, which would cap xgboost at one thread
    workers = {
        "cpu": {"cls": Nanny, "options": {"nthreads": 1, "host": "127.0.0.1", "name": "cpu", "env": omp}},
        "gpu": {"cls": Nanny, "options": {"nthreads": 1, "host": "127.0.0.1", "name": "gpu", "resources": {"GPU": 1}}},
    }
    scheduler = {"cls": Scheduler, "options": {"host": "127.0.0.1", "dashboard_address": ":0"}}
    print(f"xgboost {xgb.__version__}; {args.rows:,} rows × {args.features} features; cpu worker: {cores} cores")
    with (
        SpecCluster(scheduler=scheduler, workers=workers, silence_logs=logging.ERROR) as cluster,
        Client(cluster) as client,
    ):
        _, on_gpu = placed(ModelSpec(family="xgboost"), "cuda")
        with on_gpu:  # the flows' own routing: no worker named
            product = client.submit(mlpipe_fit, args.rows, args.features, "cuda", pure=False).result()
        raw = client.submit(raw_fit, args.rows, args.features, workers=["gpu"], pure=False).result()
        cpu = client.submit(mlpipe_fit, args.rows, args.features, "cpu", workers=["cpu"], pure=False).result()
    for label, result in (("mlpipe, GPU", product), ("raw xgboost, GPU", raw), ("mlpipe, CPU", cpu)):
        print(
            f"  {label:<17} worker={result['worker']} device={result['device']} "
            f"{result['seconds']:8.2f} s  test AUC {result['auc']:.4f}"
        )
    speedup = cpu["seconds"] / product["seconds"]
    overhead = product["seconds"] / raw["seconds"]
    checks = {
        "routed to the GPU worker, booster on cuda": product["worker"] == "gpu"
        and product["device"].startswith("cuda"),
        f"CPU / GPU = {speedup:.1f} (goal ≥ {GOAL_SPEEDUP:g})": speedup >= GOAL_SPEEDUP,
        f"mlpipe GPU / raw GPU = {overhead:.3f} (goal ≤ {GOAL_OVERHEAD:.2f})": overhead <= GOAL_OVERHEAD,
        "test AUCs within 0.005": max(r["auc"] for r in (product, raw, cpu))
        - min(r["auc"] for r in (product, raw, cpu))
        < 0.005,
    }
    for check, ok in checks.items():
        print(f"{'ok  ' if ok else 'MISS'} {check}")
    if not all(checks.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
