"""Atomic writes: readers see a whole file or none, whatever happens while it is written."""

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mlpipe.tasks.storage import atomic_write, write_json, write_parquet

pytestmark = pytest.mark.unit


def test_a_write_that_fails_halfway_leaves_the_old_file_and_no_temporary(tmp_path: Path):
    target = tmp_path / "part.parquet"
    write_parquet(pa.table({"x": [1, 2]}), str(target))
    with pytest.raises(OSError, match="disk full"), atomic_write(str(target)) as staged:
        staged.fs.pipe_file(staged.path, b"half a file")
        raise OSError("disk full")
    assert pq.read_table(target).column("x").to_pylist() == [1, 2]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["part.parquet"]


def test_the_temporary_name_is_hidden_beside_the_target_until_renamed(tmp_path: Path):
    target = tmp_path / "out" / "manifest.json"
    target.parent.mkdir()
    with atomic_write(str(target)) as staged:
        staged.fs.pipe_file(staged.path, b"{}")
        assert Path(staged.path).parent == target.parent and Path(staged.path).name.startswith(".")
        assert not target.exists()
    assert target.read_bytes() == b"{}"


def test_a_discarded_write_publishes_nothing(tmp_path: Path):
    target = tmp_path / "empty.parquet"
    with atomic_write(str(target)) as staged:
        staged.fs.pipe_file(staged.path, b"nothing worth keeping")
        staged.keep = False
    assert list(tmp_path.iterdir()) == []


def test_json_documents_are_written_whole(tmp_path: Path):
    write_json(str(tmp_path / "done.json"), {"rows": 3})
    assert (tmp_path / "done.json").read_text().replace(" ", "").replace("\n", "") == '{"rows":3}'
