"""Benchmark: distributed training's wall time and each worker's peak memory as the rows grow, on 2 worker processes.

For each size the demo data (one 1M-row block, repeated) is written as 8 Parquet files, ingested as
a partitioned dataset and split by row hash; then `fit_distributed` (xgboost, 100 rounds, depth 6)
runs on a fresh LocalCluster of 2 worker processes with one thread each, and as a baseline the same
fit as one task (`train`'s single-task path) on a cluster of one such worker. Printed per size: the
seconds (and seconds per million training rows), and the largest worker's peak resident memory
(`VmHWM`) over its peak before the fit, libraries already imported. Time should grow no faster than
the rows, and a worker's memory with rows ÷ workers: well under what one task holding the split needs.

    python -m tests.benchmarks.scaling [--rows 1000000 4000000 16000000]
"""

import argparse
import time
from pathlib import Path
from typing import Any

from tests.benchmarks.scratch import scratch_workspace

BLOCK_ROWS = 1_000_000
FILES = 8


def vm_hwm() -> int:
    """This process's peak resident memory, in bytes."""
    return int(open("/proc/self/status").read().split("VmHWM:")[1].split()[0]) * 1024


def write_parts(folder: Path, rows: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from mlpipe.demo_data import credit_default

    block = pa.Table.from_pandas(credit_default(rows=BLOCK_ROWS, seed=11), preserve_index=False)
    folder.mkdir(parents=True)
    per_file = rows // FILES
    for index in range(FILES):
        start = index * per_file
        pieces = [block.slice((start + done) % BLOCK_ROWS, per_file - done) for done in range(0, per_file, BLOCK_ROWS)]
        pq.write_table(pa.concat_tables(pieces).slice(0, per_file), folder / f"part-{index}.parquet")


def measure(rows: int, scratch: Path) -> dict[str, float]:
    from distributed import Client, LocalCluster

    from mlpipe.blocks import Datastore
    from mlpipe.tasks.data.contract_inference import infer_dataset_contract
    from mlpipe.tasks.data.ingest import ingest
    from mlpipe.tasks.data.split import SplitSpec, split
    from mlpipe.tasks.datasets import head_rows
    from mlpipe.tasks.model.distributed import fit_distributed
    from mlpipe.tasks.model.families import ModelSpec, build_estimator

    folder, store = scratch / f"data-{rows}", Datastore(url=str(scratch / f"store-{rows}")).resolve()
    write_parts(folder, rows)
    dataset = ingest(str(folder), store)
    contract = infer_dataset_contract(dataset, store, "default", exclude=["application_id", "applied_at"])
    splits = split(dataset, contract, SplitSpec(), store)
    head = head_rows(splits.train, store, 100_000)
    frame_bytes = head.memory_usage(deep=True).sum() / len(head) * splits.train.rows
    spec = ModelSpec(params={"n_estimators": 100, "max_depth": 6}, distributed=True)
    estimator = build_estimator(spec, contract.task, n_jobs=1)
    found = {"rows": splits.train.rows, "frame": frame_bytes}
    for workers in (2, 1):  # distributed on two worker processes; then one task on one, the baseline
        with (
            LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
            Client(cluster) as client,
        ):
            client.run(warm_up)
            idle = client.run(vm_hwm)
            started = time.perf_counter()
            if workers == 2:
                fit_distributed(estimator, splits, contract, store)
            else:
                client.submit(fit_in_one_task, estimator, splits, contract, store).result()
            seconds = time.perf_counter() - started
            peaks = client.run(vm_hwm)
        found[f"seconds_{workers}"] = seconds
        found[f"worker_{workers}"] = max(peaks[worker] - idle[worker] for worker in peaks)
    return found


def warm_up() -> None:
    """Import what a fit imports, so a worker's growth is the data's, not the libraries'."""
    import mlpipe.tasks.model.distributed
    import mlpipe.tasks.model.train  # noqa: F401


def fit_in_one_task(estimator: Any, splits: Any, contract: Any, store: Any) -> None:
    """What `train` does for one task: read the train split whole, preprocess and fit."""
    from mlpipe.tasks.datasets import read_snapshot
    from mlpipe.tasks.model.families import ModelSpec
    from mlpipe.tasks.model.train import _fit

    _fit(estimator, read_snapshot(splits.train, store), splits, contract, ModelSpec(), store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    sizes = parser.parse_args().rows
    scratch = scratch_workspace("scaling")
    gib = 2**30
    print(
        "| rows | train rows | train split as a frame | 2 workers: s | s per M rows | largest worker's growth "
        "| 1 task: s | its worker's growth | memory ratio 2 workers / 1 task |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for rows in sizes:
        found = measure(rows, scratch)
        per_million = found["seconds_2"] / found["rows"] * 1e6
        print(
            f"| {rows:,} | {found['rows']:,.0f} | {found['frame'] / gib:.2f} GiB | {found['seconds_2']:.1f} "
            f"| {per_million:.1f} | {found['worker_2'] / gib:.2f} GiB | {found['seconds_1']:.1f} "
            f"| {found['worker_1'] / gib:.2f} GiB | {found['worker_2'] / found['worker_1']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
