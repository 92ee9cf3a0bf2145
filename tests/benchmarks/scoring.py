"""Benchmark: batch scoring with the flow versus raw xgboost over the same files, on the same cores, in one run.

Data: `--files` Parquet files of `--rows-per-file` rows × 30 numeric features (default 40 × 500,000
= 20M rows); the model: xgboost with 200 trees, trained and registered by the training flow.

1. Throughput: `mlpipe score` (a fresh process, the local Dask cluster) against a plain loop in this
   process that reads each file with pyarrow and calls `Booster.inplace_predict` on all cores.
   The flow's rows/s is its scoring phase (first batch submitted to last batch written, from its
   manifest), and the ratio to the plain loop is the goal (≥ 0.85); the command's end-to-end
   time (start-up, planning, publishing) is shown beside it. The plain loop runs before and after
   the flow and its mean is the baseline, which evens out this machine's drift.
2. Memory: peak RSS of the scoring process and its children (the Prefect server it starts is
   shown apart), sampled every 0.1 s, for the first quarter of the files and for all of them
   (goal ≤ 3 GiB, the same at both sizes).

    python -m tests.benchmarks.scoring [--files 40] [--rows-per-file 500000]
"""

import argparse
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pyarrow.parquet as pq

from tests.benchmarks.scratch import scratch_workspace

FEATURES = [f"x{i:02d}" for i in range(30)]
GIB = 1 << 30


def write_files(folder: Path, files: int, rows: int) -> list[Path]:
    """Numeric features with a logistic label that depends on a few of them."""
    folder.mkdir(parents=True)
    paths = []
    weights = np.random.default_rng(0).normal(size=len(FEATURES)) * (np.arange(len(FEATURES)) < 8)
    for index in range(files):
        rng = np.random.default_rng(index + 1)
        features = rng.normal(size=(rows, len(FEATURES)))
        label = (rng.random(rows) < 1 / (1 + np.exp(-(features @ weights)))).astype(np.int64)
        frame = pd.DataFrame(features, columns=FEATURES)
        frame["label"] = label
        path = folder / f"part-{index:03d}.parquet"
        frame.to_parquet(path, index=False)
        paths.append(path)
    return paths


def plain_scoring(paths: list[Path], booster: object) -> float:
    """The floor: read each file with pyarrow and predict in place; returns seconds."""
    started = time.perf_counter()
    for path in paths:
        table = pq.read_table(path, columns=FEATURES)
        rows = np.column_stack([column.to_numpy() for column in table.columns])
        booster.inplace_predict(rows)  # type: ignore[attr-defined]
    return time.perf_counter() - started


def flow_scoring(paths: list[Path], output: Path, scratch: Path) -> tuple[dict, float, float, float]:
    """`mlpipe score` over exactly `paths`: its manifest, wall seconds, and peak RSS (GiB) of it and of its server."""
    listed = scratch / f"input-{len(paths)}"
    listed.mkdir()
    for path in paths:
        (listed / path.name).symlink_to(path)
    mlpipe = str(Path(sys.executable).parent / "mlpipe")
    command = [mlpipe, "score", "--model", "bench-scoring@champion", "--input", str(listed), "--output", str(output)]
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peaks = {"flow": 0, "server": 0}

    def sample() -> None:
        parent = psutil.Process(process.pid)
        while process.poll() is None:
            flow = server = 0
            try:
                for member in [parent, *parent.children(recursive=True)]:
                    rss = member.memory_info().rss
                    if "uvicorn" in " ".join(member.cmdline()):
                        server += rss
                    else:
                        flow += rss
            except psutil.Error:
                pass
            peaks["flow"], peaks["server"] = max(peaks["flow"], flow), max(peaks["server"], server)
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stdout, stderr = process.communicate()
    wall = time.perf_counter() - started
    sampler.join()
    if process.returncode != 0:
        raise SystemExit(f"mlpipe score failed:\n{stdout}\n{stderr[-3000:]}")
    manifest = json.loads(next(output.glob("_manifests/*.json")).read_text())
    return manifest, wall, peaks["flow"] / GIB, peaks["server"] / GIB


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=40)
    parser.add_argument("--rows-per-file", type=int, default=500_000)
    args = parser.parse_args()
    scratch = scratch_workspace("scoring")

    from mlpipe.blocks import WorkspaceConfig
    from mlpipe.flows.training import TrainingParams, training
    from mlpipe.runtime import configure_process
    from mlpipe.workspace import available_cores

    configure_process()
    paths = write_files(scratch / "data", args.files, args.rows_per_file)
    total = args.files * args.rows_per_file
    print(
        f"cores: {available_cores()}; {args.files} files × {args.rows_per_file:,} rows × 30 features = {total:,} rows"
    )
    params = TrainingParams(
        data=str(paths[0]), target="label", name="bench-scoring", model={"params": {"n_estimators": 200}}
    )
    training(params, WorkspaceConfig())

    import mlflow

    with WorkspaceConfig().resolve().mlflow.session():
        model = mlflow.pyfunc.load_model("models:/bench-scoring@champion").unwrap_python_model()
    booster = model.pipeline.steps[-1][1].get_booster()

    before = plain_scoring(paths, booster)
    manifest, wall, peak, server = flow_scoring(paths, scratch / "out-all", scratch)
    after = plain_scoring(paths, booster)
    plain_rate = total / ((before + after) / 2)
    print(f"plain pyarrow + inplace_predict: {before:.1f} s and {after:.1f} s ({plain_rate:,.0f} rows/s)")
    print(
        f"mlpipe score, {total:,} rows: scoring phase {manifest['seconds']:.1f} s "
        f"({manifest['rows_per_second']:,.0f} rows/s), command end to end {wall:.1f} s; "
        f"{manifest['batches']} batches; peak RSS {peak:.2f} GiB (+ Prefect server {server:.2f} GiB)"
    )
    assert manifest["rows_out"] == total, manifest
    quarter = paths[: max(1, args.files // 4)]
    small, small_wall, small_peak, _ = flow_scoring(quarter, scratch / "out-quarter", scratch)
    print(
        f"mlpipe score, {small['rows_in']:,} rows: scoring phase {small['seconds']:.1f} s, end to end "
        f"{small_wall:.1f} s; peak RSS {small_peak:.2f} GiB"
    )
    print(f"RATIO flow rows/s / plain rows/s = {manifest['rows_per_second'] / plain_rate:.3f}  (goal ≥ 0.85)")
    print(f"RATIO end to end rows/s / plain  = {total / wall / plain_rate:.3f}")
    print(f"PEAK RSS {small_peak:.2f} GiB at {small['rows_in']:,} rows, {peak:.2f} GiB at {total:,} rows (goal ≤ 3)")


if __name__ == "__main__":
    main()
