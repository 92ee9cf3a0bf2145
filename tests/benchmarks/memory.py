"""Benchmark: peak resident memory of ingest → validate → split, at 1M and 10M rows of CSV.

Each size runs once per code version in a fresh process that reports its own peak (`VmHWM`),
on the same file: this checkout, and with `--before PYTHON` another checkout's interpreter (its
`mlpipe` installed), e.g. main's, so the ratio before/after is printed. The CSV is 1M rows of the
demo data (18 columns), repeated for larger sizes; the contract is inferred from its first 100k
rows. Runs at 10M rows are heavy (the file is ≈ 1.7 GB): one per version.

    python -m tests.benchmarks.memory [--rows 1000000 10000000] [--before /path/to/other/.venv/bin/python]
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.benchmarks.scratch import scratch_workspace
from tests.peak_memory import PEAK_RSS_BYTES

BLOCK_ROWS = 1_000_000

STEPS = f"""
import json, sys, time
import pandas as pd
from mlpipe.blocks import Datastore
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.data.ingest import ingest
from mlpipe.tasks.data.split import SplitSpec, split
from mlpipe.tasks.data.validate import validate

source, store = sys.argv[1], Datastore(url=sys.argv[2]).resolve()
contract = infer_contract(pd.read_csv(source, nrows=100_000), "default", exclude=["application_id", "applied_at"])
seconds = {{}}
started = time.perf_counter()
ref = ingest(source, store)
seconds["ingest"] = time.perf_counter() - started
validate(ref, contract, store)
seconds["validate"] = time.perf_counter() - started - seconds["ingest"]
parts = split(ref, contract, SplitSpec(), store)
seconds["split"] = time.perf_counter() - started - seconds["ingest"] - seconds["validate"]
peak = {PEAK_RSS_BYTES}
print(json.dumps({{"peak": peak, "rows": ref.rows, "seconds": seconds, "test_rows": parts.test.rows}}))
"""
"""Uses only what both code versions offer: ingest, infer_contract, validate and split as plain functions."""


def write_csv(path: Path, rows: int) -> None:
    """`rows` rows of demo data: one block of 1M rows written as often as needed (the same file for both runs)."""
    from mlpipe.demo_data import credit_default

    block = credit_default(rows=min(rows, BLOCK_ROWS), seed=11).to_csv(index=False)
    header, body = block.split("\n", 1)
    with path.open("w") as handle:
        handle.write(header + "\n")
        for _ in range(max(1, rows // BLOCK_ROWS)):
            handle.write(body)


def measure(python: str, scratch: Path, source: Path, store: Path) -> dict[str, Any]:
    """Run the steps in a fresh process of `python` (from the scratch folder, so no source tree shadows its mlpipe)."""
    done = subprocess.run(
        [python, "-c", STEPS, str(source), str(store)], cwd=scratch, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise SystemExit(f"{python} failed:\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, nargs="+", default=[1_000_000, 10_000_000])
    parser.add_argument("--before", help="a Python whose installed mlpipe is the code to compare against")
    args = parser.parse_args()
    scratch = scratch_workspace("memory")
    versions = {"before": args.before, "after": sys.executable} if args.before else {"after": sys.executable}
    for rows in args.rows:
        source = scratch / f"rows-{rows}.csv"
        write_csv(source, rows)
        peaks = {}
        for label, python in versions.items():
            result = measure(python, scratch, source, scratch / f"store-{label}-{rows}")
            peaks[label] = int(result["peak"])
            timings = ", ".join(f"{step} {value:.1f} s" for step, value in result["seconds"].items())
            print(f"{rows:>11,} rows  {label:<6} peak RSS {peaks[label] / 2**30:6.2f} GiB  ({timings})", flush=True)
        if "before" in peaks:
            print(f"{rows:>11,} rows  before/after peak RSS ratio: {peaks['before'] / peaks['after']:.1f}x", flush=True)
        source.unlink()


if __name__ == "__main__":
    main()
