"""Benchmark: what a user waits for when running `mlpipe train`, as fresh processes, in one run.

Ratios printed (goals from the issue):
  (a) with a workspace up (Prefect server, MLflow server, Dask scheduler and worker):
      `mlpipe train` on 10k rows / the plain script on the same data        (goal ≤ 2)
  (b) a fully cached re-run / the first run on the same data, embedded        (goal ≤ 0.3)
      (and the same with the workspace up)
  (c) on the embedded default (no servers) / the plain script                 (goal ≤ 3)

Every figure is a fresh process timed from start to exit: imports, server start, bookkeeping and
exit included. The plain script (`tests.benchmarks.plain_training`) does the same steps (read,
split, fit, evaluate) with its own imports. A first `mlpipe train` on other data runs before the
measured ones, so the databases exist (its time is printed too, as "first ever").

    python -m tests.benchmarks.commands [--rows 10000] [--repeats 2]
"""

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.scratch import scratch_workspace
from tests.servers import BIN, free_port, mlflow_server, prefect_server, serving

EXCLUDE = ["application_id", "applied_at"]


@dataclass
class Timing:
    """Wall-clock seconds of a fresh process, and the CPU seconds it and the processes it waited for used."""

    wall: float
    cpu: float

    def __str__(self) -> str:
        return f"{self.wall:.1f} s ({self.cpu:.1f} s CPU)"


def timed(command: list[str], env: dict[str, str] | None = None) -> Timing:
    """How long `command` took as a fresh process; stops the benchmark with its stderr if it failed.

    CPU seconds are printed beside wall-clock ones: on a machine shared with other work, they
    show what the command itself costs.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(command, capture_output=True, text=True, env={**os.environ, **(env or {})})
    elapsed = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-3000:]}")
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    return Timing(elapsed, cpu)


def ratio(numerator: list[Timing], denominator: list[Timing]) -> str:
    """Median over median, of wall-clock and of CPU seconds."""
    wall = statistics.median(t.wall for t in numerator) / statistics.median(t.wall for t in denominator)
    cpu = statistics.median(t.cpu for t in numerator) / statistics.median(t.cpu for t in denominator)
    return f"{wall:.2f}  (CPU seconds: {cpu:.2f})"


def mlpipe_train(data: Path, name: str) -> list[str]:
    excluded = [arg for column in EXCLUDE for arg in ("--exclude", column)]
    return [str(BIN / "mlpipe"), "train", "--data", str(data), "--target", "default", "--name", name, *excluded]


def plain_script(data: Path) -> list[str]:
    return [sys.executable, "-m", "tests.benchmarks.plain_training", str(data), "default", *EXCLUDE]


@contextmanager
def workspace_up(folder: Path) -> Iterator[dict[str, str]]:
    """A running workspace; yields the variables a command uses to find it.

    Started here as separate real servers (Prefect, MLflow, a Dask scheduler and one worker
    process); `mlpipe up` can take this function's place, with `mlpipe status --json` for the URLs.
    """
    (folder / "prefect").mkdir(parents=True, exist_ok=True)
    with ExitStack() as stack:
        api_url, _ = stack.enter_context(prefect_server(folder / "prefect"))
        tracking_uri = stack.enter_context(mlflow_server(folder / "mlflow"))
        port = free_port()
        address = f"tcp://127.0.0.1:{port}"
        scheduler = [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
        scheduler += ["--dashboard-address", "127.0.0.1:0"]
        stack.enter_context(serving(scheduler, address, folder / "scheduler.log", dict(os.environ)))
        variables = {"PREFECT_API_URL": api_url, "MLFLOW_TRACKING_URI": tracking_uri, "DASK_SCHEDULER_ADDRESS": address}
        worker_port = free_port()
        worker = [str(BIN / "dask"), "worker", address, "--host", "127.0.0.1", "--worker-port", str(worker_port)]
        worker += ["--dashboard-address", "127.0.0.1:0", "--nworkers", "1"]
        worker_env = {**os.environ, **variables}
        stack.enter_context(serving(worker, f"tcp://127.0.0.1:{worker_port}", folder / "worker.log", worker_env))
        yield variables


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2, help="datasets measured (medians are printed)")
    args = parser.parse_args()
    scratch = scratch_workspace("commands")

    from mlpipe.demo_data import credit_default

    def dataset(name: str, seed: int) -> Path:
        path = scratch / f"{name}.parquet"
        credit_default(rows=args.rows, seed=seed, columns=30).to_parquet(path, index=False)
        return path

    warm_up = dataset("warm-up", 1)
    measured = [dataset(f"data-{seed}", seed) for seed in range(10, 10 + args.repeats)]
    print(f"cores: {os.cpu_count()}; data: {args.rows:,} rows × 30 columns; {args.repeats} datasets")

    first_ever = timed(mlpipe_train(warm_up, "bench-warm-up"))
    print(f"first ever `mlpipe train` (new Prefect and MLflow databases): {first_ever}")
    plain: list[Timing] = []
    embedded: list[Timing] = []
    cached: list[Timing] = []
    for index, data in enumerate(measured):
        plain.append(timed(plain_script(data)))
        embedded.append(timed(mlpipe_train(data, f"bench-{index}")))
        cached.append(timed(mlpipe_train(data, f"bench-{index}")))
        print(f"embedded, dataset {index + 1}: plain {plain[-1]}, first {embedded[-1]}, cached re-run {cached[-1]}")

    served: list[Timing] = []
    served_cached: list[Timing] = []
    with workspace_up(scratch / "servers") as variables:
        timed(mlpipe_train(warm_up, "bench-up-warm-up"), variables)  # the worker's first imports
        for index, data in enumerate(measured):
            plain.append(timed(plain_script(data)))
            served.append(timed(mlpipe_train(data, f"bench-up-{index}"), variables))
            served_cached.append(timed(mlpipe_train(data, f"bench-up-{index}"), variables))
            print(
                f"workspace up, dataset {index + 1}: plain {plain[-1]}, mlpipe train {served[-1]}, "
                f"cached re-run {served_cached[-1]}"
            )

    print(f"plain script: median of {len(plain)} runs")
    print(f"RATIO (a) workspace up / plain  = {ratio(served, plain)}  (goal ≤ 2)")
    print(f"RATIO (b) cached / first run    = {ratio(cached, embedded)}  (goal ≤ 0.3)")
    print(f"    the same, workspace up        = {ratio(served_cached, served)}")
    print(f"RATIO (c) embedded / plain      = {ratio(embedded, plain)}  (goal ≤ 3)")


if __name__ == "__main__":
    main()
