"""Benchmark: what a user waits for when running `mlpipe train`, as fresh processes, in one run.

Ratios printed (goals from the issue):
  (a) with a workspace up (`mlpipe up`: Prefect server, MLflow server, Dask scheduler and workers,
      command server): `mlpipe train` on 10k rows / the plain script on the same data  (goal ≤ 2)
  (b) a fully cached re-run / the first run on the same data, workspace up            (goal ≤ 0.3)
      (and the same without the command server, and on the embedded default)
  (c) on the embedded default (no servers) / the plain script                         (goal ≤ 3)

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.benchmarks.scratch import scratch_workspace
from tests.servers import BIN

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
def workspace_up() -> Iterator[None]:
    """`mlpipe up` in the benchmark's workspace (free ports), as a user starts it; `mlpipe down` after.

    Commands run with the same MLPIPE_HOME then use it by themselves.
    """
    free = ["--prefect-port", "0", "--mlflow-port", "0", "--dask-port", "0", "--dashboard-port", "0"]
    timed([str(BIN / "mlpipe"), "up", *free])
    try:
        yield
    finally:
        subprocess.run([str(BIN / "mlpipe"), "down"], capture_output=True)


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
    # the workspace without its command server trains other data: the same data would be cached
    other = [dataset(f"data-{seed}", seed) for seed in range(20, 20 + args.repeats)]
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
    in_process: list[Timing] = []
    in_process_cached: list[Timing] = []
    without_command_server = {"MLPIPE_COMMAND_SERVER": "off"}
    with workspace_up():
        timed(mlpipe_train(warm_up, "bench-up-warm-up"))  # the workers' first use of each library
        for index, (data, other_data) in enumerate(zip(measured, other, strict=True)):
            plain.append(timed(plain_script(data)))
            served.append(timed(mlpipe_train(data, f"bench-up-{index}")))
            served_cached.append(timed(mlpipe_train(data, f"bench-up-{index}")))
            in_process.append(timed(mlpipe_train(other_data, f"bench-up-self-{index}"), without_command_server))
            in_process_cached.append(timed(mlpipe_train(other_data, f"bench-up-self-{index}"), without_command_server))
            print(
                f"workspace up, dataset {index + 1}: plain {plain[-1]}, mlpipe train {served[-1]}, "
                f"cached re-run {served_cached[-1]}; without the command server: mlpipe train {in_process[-1]}, "
                f"cached re-run {in_process_cached[-1]}"
            )

    print(f"plain script: median of {len(plain)} runs (CPU seconds of a command run by the command server")
    print("are the server's, not the command's: only wall-clock ratios compare)")
    print(f"RATIO (a) workspace up / plain  = {ratio(served, plain)}  (goal ≤ 2)")
    print(f"    the same, no command server   = {ratio(in_process, plain)}")
    print(f"RATIO (b) cached / first run, workspace up = {ratio(served_cached, served)}  (goal ≤ 0.3)")
    print(f"    the same, no command server   = {ratio(in_process_cached, in_process)}")
    print(f"    the same, embedded            = {ratio(cached, embedded)}")
    print(f"RATIO (c) embedded / plain      = {ratio(embedded, plain)}  (goal ≤ 3)")


if __name__ == "__main__":
    main()
