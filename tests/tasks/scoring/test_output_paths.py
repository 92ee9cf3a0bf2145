"""A partition name can never lead outside the output folder."""

from pathlib import Path

import pytest
from pydantic import ValidationError

from mlpipe.flows.scoring import ScoringParams
from mlpipe.tasks.scoring.output import OutputLayout
from mlpipe.tasks.storage import child

pytestmark = pytest.mark.unit
TRAVERSAL = "2026-01-01/../../x"


def test_a_partition_that_climbs_out_is_refused_before_the_run(tmp_path: Path):
    with pytest.raises(ValidationError, match="partition"):
        ScoringParams(model="m@champion", input=str(tmp_path), output=str(tmp_path / "out"), partition=TRAVERSAL)
    with pytest.raises(ValidationError, match="partition"):
        OutputLayout(url=str(tmp_path / "out"), partition=TRAVERSAL)


@pytest.mark.parametrize("parts", [("..",), ("a", "../b"), ("a/./b",), ("",), ("/etc",)])
def test_paths_under_a_root_refuse_every_way_out(parts: tuple[str, ...]):
    with pytest.raises(ValueError, match="is not a path inside"):
        child("/data/out", *parts)


def test_paths_under_a_root_keep_urls_intact():
    assert child("s3://bucket/out/", "_errors", "run=2026-01-01") == "s3://bucket/out/_errors/run=2026-01-01"
