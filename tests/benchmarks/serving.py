"""Benchmark: `mlpipe serve` against `mlflow models serve` and a floor app, same model, same cores, one run.

Model: xgboost (100 trees, depth 6) on the demo credit data, preprocessing included, registered
in a scratch MLflow on SQLite. Each server runs `--workers N` uvicorn processes pinned to the same
cores (taskset), with its keys/validation/metrics on as a user runs it (`mlpipe serve` with an API
key; `mlflow models serve --env-manager local`; the floor of tests/benchmarks/serving_floor.py).
The load comes from this process (aiohttp, asyncio), the same for all three.

1. Single-row requests from 64 concurrent clients for `--seconds` (default 30): throughput and
   p99 of `mlpipe serve` against MLflow (goals ≥ 3× and ≤ 0.5×) and against the floor (≥ 0.8×,
   ≤ 1.5×).
2. 1,000-row requests from 4 clients: rows/s against the floor.

    python -m tests.benchmarks.serving [--seconds 30] [--workers 2]
"""

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from tests.benchmarks.scratch import scratch_workspace

KEY = "bench-key-0123456789"
CLIENTS = 64
BATCH_CLIENTS = 4
BATCH_ROWS = 1_000
BIN = Path(sys.executable).parent
READY_ANSWERS = 20
READINESS = {"mlpipe serve": "ready", "mlflow models serve": "ping", "floor": "health"}


def train(scratch: Path) -> tuple[str, str]:
    """Register the model; (tracking URI, model URI)."""
    from mlpipe.blocks import MlflowConnection
    from mlpipe.tasks.registry.aliases import set_champion
    from tests.infra.serving.models import register_model

    tracking = MlflowConnection(
        tracking_uri=f"sqlite:///{scratch / 'mlflow.db'}", artifact_location=(scratch / "artifacts").as_uri()
    ).resolve()
    version = register_model(tracking, "bench", trees=100, depth=6)
    set_champion("bench", version, tracking, reason="benchmark")
    return str(tracking.tracking_uri), f"models:/bench/{version}"


@contextmanager
def server(command: list[str], port: int, ready: str, env: dict[str, str], log: Path, cores: str) -> Iterator[None]:
    """`command` pinned to `cores`, once `ready` answers on `port`; stopped afterwards."""
    process = subprocess.Popen(
        ["taskset", "-c", cores, *command], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 180
        answered = 0
        while answered < READY_ANSWERS:  # in a row: every worker has loaded the model
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/{ready}", timeout=2)
                answered += 1
            except OSError:
                answered = 0
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError(log.read_text()[-3000:]) from None
                time.sleep(0.3)
        yield
    finally:
        process.terminate()
        process.wait(timeout=60)


async def load(url: str, bodies: list[bytes], clients: int, seconds: float, headers: dict[str, str]) -> dict:
    """`clients` loops posting `bodies` in turn for `seconds` (after a 2 s warm-up); counts and latencies."""
    import aiohttp

    latencies: list[float] = []
    errors = 0
    measuring = False
    stop = False

    async def client(index: int, session: aiohttp.ClientSession) -> None:
        nonlocal errors
        turn = index
        while not stop:
            body = bodies[turn % len(bodies)]
            turn += clients
            started = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as answer:
                    await answer.read()
                    ok = answer.status == 200
            except aiohttp.ClientError:
                ok = False
            if measuring:
                latencies.append(time.perf_counter() - started)
                errors += not ok

    connector = aiohttp.TCPConnector(limit=clients)
    async with aiohttp.ClientSession(connector=connector) as session:
        tasks = [asyncio.create_task(client(i, session)) for i in range(clients)]
        await asyncio.sleep(2)
        measuring = True
        started = time.perf_counter()
        await asyncio.sleep(seconds)
        measuring = False
        elapsed = time.perf_counter() - started
        stop = True
        await asyncio.gather(*tasks)
    values = np.array(latencies)
    return {
        "requests_per_s": len(values) / elapsed,
        "p50_ms": float(np.percentile(values, 50) * 1000),
        "p99_ms": float(np.percentile(values, 99) * 1000),
        "errors": errors,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0, help="measured time per server and request size")
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers of each server")
    parser.add_argument("--cores", default=None, help="CPU list the servers are pinned to (default: all)")
    args = parser.parse_args()
    scratch = scratch_workspace("serving")
    cores = args.cores or f"0-{os.cpu_count() - 1}"  # type: ignore[operator]
    tracking_uri, model_uri = train(scratch)
    from tests.infra.serving.models import feature_rows

    rows = json.loads(feature_rows("classification", 4_096, seed=11).to_json(orient="records"))
    singles = [json.dumps([row]).encode() for row in rows]
    batches = [json.dumps(rows[i : i + BATCH_ROWS]).encode() for i in range(0, 3 * BATCH_ROWS, BATCH_ROWS)]
    path = f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"  # `mlflow models serve` runs `uvicorn` from PATH
    env = {
        **os.environ,
        "PATH": path,
        "MLFLOW_TRACKING_URI": tracking_uri,
        "MLPIPE_API_KEYS": KEY,
        "FLOOR_MODEL_URI": model_uri,
    }
    workers = str(args.workers)
    port = 18500
    commands = {
        "mlpipe serve": [str(BIN / "mlpipe"), "serve", "--model", "bench@champion", "--workers", workers],
        "mlflow models serve": [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            model_uri,
            "--env-manager",
            "local",
            "-w",
            workers,
            "-h",
            "127.0.0.1",
        ],
        "floor": [
            str(BIN / "uvicorn"),
            "tests.benchmarks.serving_floor:create",
            "--factory",
            "--workers",
            workers,
            "--host",
            "127.0.0.1",
            "--no-access-log",
            "--log-level",
            "warning",
        ],
    }
    single: dict[str, dict] = {}
    batch: dict[str, dict] = {}
    for name, command in commands.items():
        port += 1
        flag = "-p" if name == "mlflow models serve" else "--port"
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {KEY}"}
        with server([*command, flag, str(port)], port, READINESS[name], env, scratch / f"{name.split()[0]}.log", cores):
            url = f"http://127.0.0.1:{port}/{'invocations' if name == 'mlflow models serve' else 'predict'}"
            as_body = (
                (lambda b: b'{"dataframe_records": ' + b + b"}") if name == "mlflow models serve" else (lambda b: b)
            )
            single[name] = asyncio.run(load(url, [as_body(b) for b in singles], CLIENTS, args.seconds, headers))
            print(f"{name:20s} single rows: {single[name]}", flush=True)
            if name != "mlflow models serve":
                batch[name] = asyncio.run(
                    load(url, [as_body(b) for b in batches], BATCH_CLIENTS, args.seconds, headers)
                )
                print(f"{name:20s} 1,000-row batches: {batch[name]}", flush=True)
    ours, mlflow_, floor = single["mlpipe serve"], single["mlflow models serve"], single["floor"]
    print(f"\n{CLIENTS} clients, single rows, {args.seconds:.0f} s each, {workers} workers on cores {cores}:")
    print(
        f"  vs mlflow models serve: throughput {ours['requests_per_s'] / mlflow_['requests_per_s']:.2f}× (goal ≥ 3), "
        f"p99 {ours['p99_ms'] / mlflow_['p99_ms']:.2f}× (goal ≤ 0.5)"
    )
    print(
        f"  vs the floor:           throughput {ours['requests_per_s'] / floor['requests_per_s']:.2f}× (goal ≥ 0.8), "
        f"p99 {ours['p99_ms'] / floor['p99_ms']:.2f}× (goal ≤ 1.5)"
    )
    rows_ours = batch["mlpipe serve"]["requests_per_s"] * BATCH_ROWS
    rows_floor = batch["floor"]["requests_per_s"] * BATCH_ROWS
    print(
        f"  1,000-row batches ({BATCH_CLIENTS} clients): {rows_ours:,.0f} rows/s vs the floor's {rows_floor:,.0f} "
        f"({rows_ours / rows_floor:.2f}×)"
    )
    errors = sum(result["errors"] for result in [*single.values(), *batch.values()])
    print(f"  failed requests: {errors}")


if __name__ == "__main__":
    main()
