"""Benchmark: the training flow versus the plain script, on the same data and cores, in one run.

1. Fixed cost a user feels on small data: `mlpipe train` on 10k rows (a fresh process that starts
   a temporary Prefect API and a Dask cluster) versus the plain script in a fresh process.
2. 1M rows × 30 columns, in this process (imports done, Prefect API up, as in a worker that runs
   scheduled flows): the flow's wall time as a ratio to the plain steps (goal ≤ 1.25), and the
   cached re-run as a fraction of the first run (goal ≤ 0.05). Plain and flow alternate over
   `--repeats` datasets (different seeds, so no run is served from another's cache) and the
   ratio is of the totals, which evens out this machine's noise.

    python -m tests.benchmarks.training [--rows 1000000] [--small-rows 10000]
"""

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tests.benchmarks.scratch import scratch_workspace

EXCLUDE = ["application_id", "applied_at"]


def seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"failed: {' '.join(command)}\n{result.stderr[-3000:]}")


def cli_train(data: Path, name: str) -> list[str]:
    excluded = [arg for column in EXCLUDE for arg in ("--exclude", column)]
    mlpipe = str(Path(sys.executable).parent / "mlpipe")
    return [mlpipe, "train", "--data", str(data), "--target", "default", "--name", name, *excluded]


def plain_script(data: Path) -> list[str]:
    return [sys.executable, "-m", "tests.benchmarks.plain_training", str(data), "default", *EXCLUDE]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--small-rows", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    scratch = scratch_workspace("training", quiet=False)

    from mlpipe.demo_data import credit_default
    from mlpipe.workspace import available_cores

    small = scratch / "small.parquet"
    credit_default(rows=args.small_rows, seed=3, columns=30).to_parquet(small, index=False)
    large = [scratch / f"large-{seed}.parquet" for seed in range(4, 4 + args.repeats)]
    for seed, path in enumerate(large, start=4):
        credit_default(rows=args.rows, seed=seed, columns=30).to_parquet(path, index=False)
    print(f"cores: {available_cores()}; data: {args.rows:,} and {args.small_rows:,} rows × 30 columns")

    warm_up = seconds(lambda: run(cli_train(small, "bench-warm-up")))  # creates the Prefect and MLflow databases
    cold_plain = seconds(lambda: run(plain_script(small)))
    cold_flow = seconds(lambda: run(cli_train(small, "bench-small")))
    print(f"first ever `mlpipe train` (new Prefect and MLflow databases): {warm_up:.1f} s")
    print(
        f"fixed cost on {args.small_rows:,} rows, fresh processes: mlpipe train {cold_flow:.1f} s, "
        f"plain script {cold_plain:.1f} s (+{cold_flow - cold_plain:.1f} s)"
    )

    from mlpipe.runtime import configure_process

    configure_process()
    from mlpipe.blocks import WorkspaceConfig
    from mlpipe.flows.training import TrainingParams, training
    from tests.benchmarks.plain_training import main as plain_steps

    def flow(data: Path, name: str) -> None:
        training(TrainingParams(data=str(data), target="default", name=name, exclude=EXCLUDE), WorkspaceConfig())

    flow(small, "bench-in-process-warm-up")  # starts this process's Prefect API
    plain, first, cached = [], [], []
    for index, data in enumerate(large):
        plain.append(seconds(lambda data=data: plain_steps(str(data), "default", EXCLUDE)))
        first.append(seconds(lambda data=data, index=index: flow(data, f"bench-large-{index}")))
        cached.append(seconds(lambda data=data, index=index: flow(data, f"bench-large-{index}")))
        print(
            f"{args.rows:,} rows, one process, dataset {index + 1}: plain steps {plain[-1]:.1f} s, "
            f"flow {first[-1]:.1f} s, cached re-run {cached[-1]:.2f} s"
        )
    print(f"RATIO flow / plain        = {sum(first) / sum(plain):.3f}  (goal ≤ 1.25)")
    print(f"RATIO cached / first run  = {sum(cached) / sum(first):.3f}  (goal ≤ 0.05)")


if __name__ == "__main__":
    main()
