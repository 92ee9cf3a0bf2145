"""A batch counts as done only when its record and the parts it names are all there."""

from pathlib import Path

import pytest

from mlpipe.tasks.scoring.batch import BatchResult, Staging
from mlpipe.tasks.storage import write_json

pytestmark = pytest.mark.unit


def test_a_done_record_without_its_parts_leaves_the_batch_pending(tmp_path: Path):
    staging = Staging(url=str(tmp_path / "staging"))
    staging.prepare()
    for index, (rows_out, rows_errored) in enumerate([(10, 0), (8, 2), (10, 0), (0, 0)]):
        result = BatchResult(
            index=index, file="in.csv", rows_in=10, rows_out=rows_out, rows_errored=rows_errored, seconds=0.1
        )
        write_json(staging.path("done", index, "json"), result.model_dump())
    for kind, index in (("data", 0), ("data", 1), ("errors", 1)):  # batch 2's data part was lost
        Path(staging.path(kind, index)).write_bytes(b"part")
    assert sorted(staging.finished()) == [0, 1, 3]  # batch 3 had no rows to write
