"""Benchmark: distributed training's wall time and each worker's peak memory as the rows grow, on 2 worker processes.

For each size the demo data (one 1M-row block, repeated) is written as 8 Parquet files, ingested as
a partitioned dataset and split by row hash; then `fit_distributed` (xgboost, 100 rounds, depth 6)
runs on a fresh LocalCluster of 2 worker processes with one thread each. Printed per size: the fit's
seconds and seconds per million training rows, and each worker's peak resident memory (`VmHWM`)
over its peak before the fit, against the training split's size as a DataFrame. Time should grow no
faster than the rows, and a worker's memory with rows ÷ workers, not with rows.

    python -m tests.benchmarks.scaling [--rows 1000000 4000000 16000000]
"""

import argparse
import time
from pathlib import Path

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
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        Client(cluster) as client,
    ):
        client.run(lambda: __import__("xgboost"))
        idle = client.run(vm_hwm)
        started = time.perf_counter()
        fit_distributed(estimator, splits, contract, store)
        seconds = time.perf_counter() - started
        peaks = client.run(vm_hwm)
    grown = [peaks[worker] - idle[worker] for worker in peaks]
    return {"rows": splits.train.rows, "seconds": seconds, "frame": frame_bytes, "worker_max": max(grown)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 4_000_000, 16_000_000])
    sizes = parser.parse_args().rows
    scratch = scratch_workspace("scaling")
    gib = 2**30
    print("| rows | train rows | fit s | s per M train rows | train split as a frame | largest worker growth | ratio |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for rows in sizes:
        found = measure(rows, scratch)
        per_million = found["seconds"] / found["rows"] * 1e6
        print(
            f"| {rows:,} | {found['rows']:,.0f} | {found['seconds']:.1f} | {per_million:.1f} "
            f"| {found['frame'] / gib:.2f} GiB | {found['worker_max'] / gib:.2f} GiB "
            f"| {found['worker_max'] / found['frame']:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
