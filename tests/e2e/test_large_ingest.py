"""Ingest of a file far larger than its memory budget: a 2 GB CSV is snapshotted, in parts, in bounded memory."""

import subprocess
import sys
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from tests.peak_memory import PEAK_RSS_BYTES

pytestmark = pytest.mark.e2e

CSV_BYTES = 2 << 30
PEAK_RSS_LIMIT = 768 << 20
"""The ingest process (Python, Prefect and Arrow imported: about 170 MB) may peak at 768 MiB for a 2 GiB file
(it peaks at about 0.3 GB; reading the file whole held it several times over, > 4 GB)."""

HEADER = "id,amount,score,region,flag\n"
LINE = "{i},{amount}.25,0.{i},region_{r},{flag}\n"


def write_large_csv(path: Path, size: int) -> int:
    """A CSV of about `size` bytes, written as one 4 MB block of lines repeated: seconds, not minutes."""
    block = "".join(
        LINE.format(i=i, amount=i % 9_973, r=i % 7, flag="true" if i % 3 else "false") for i in range(80_000)
    ).encode()
    repeats = size // len(block) + 1
    with path.open("wb") as handle:
        handle.write(HEADER.encode())
        for _ in range(repeats):
            handle.write(block)
    return repeats * 80_000


INGEST = f"""
import sys
from mlpipe.blocks import Datastore
from mlpipe.tasks.data.ingest import ingest
ref = ingest(sys.argv[1], Datastore(url=sys.argv[2]).resolve())
print(ref.uri, {PEAK_RSS_BYTES})
"""
"""Runs in a process of its own, which reports its own peak resident memory (see tests.peak_memory)."""


def test_a_2_gb_csv_is_ingested_under_768_mib_of_memory(tmp_path: Path):
    source = tmp_path / "large.csv"
    rows = write_large_csv(source, CSV_BYTES)
    try:
        done = subprocess.run(
            [sys.executable, "-c", INGEST, str(source), str(tmp_path / "store")],
            capture_output=True,
            text=True,
            timeout=600,  # memory is what is tested; a busy machine may be slow
        )
    finally:
        source.unlink()
    assert done.returncode == 0, done.stderr[-2000:]
    uri, peak = done.stdout.split()[-2:]
    assert int(peak) < PEAK_RSS_LIMIT, f"peak RSS {int(peak) / 2**30:.2f} GiB for a {CSV_BYTES / 2**30:.0f} GiB CSV"
    parts = sorted(Path(uri.removeprefix("file://")).glob("part-*.parquet"))
    assert len(parts) > 1  # a file this large is a partitioned dataset, ready to spread over workers
    assert pads.dataset(parts).count_rows() == rows
