"""Ingest: bad files fail early with a message that names the file; nothing is left behind."""

import gzip
import hashlib
from pathlib import Path

import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from mlpipe.blocks import Datastore
from mlpipe.errors import DataError
from mlpipe.tasks import datasets
from mlpipe.tasks.data import ingest as ingest_module
from mlpipe.tasks.data.ingest import ingest
from tests.pipeline import leftovers

pytestmark = pytest.mark.unit


def test_empty_file(tmp_path: Path, store: Datastore):
    path = tmp_path / "empty.csv"
    path.write_text("")
    with pytest.raises(DataError, match=r"empty\.csv: file is empty"):
        ingest(str(path), store)
    assert leftovers(store) == []


def test_header_only_csv(tmp_path: Path, store: Datastore):
    path = tmp_path / "header.csv"
    path.write_text("a,b,default\n")
    with pytest.raises(DataError, match=r"header\.csv: no data rows"):
        ingest(str(path), store)


def test_corrupt_parquet(tmp_path: Path, store: Datastore):
    path = tmp_path / "corrupt.parquet"
    path.write_bytes(b"PAR1 this is not really parquet")
    with pytest.raises(DataError, match=r"corrupt\.parquet: not a valid Parquet file"):
        ingest(str(path), store)
    assert leftovers(store) == []


def test_a_parquet_file_in_a_snapshots_row_groups_is_its_own_snapshot_and_one_in_small_groups_is_regrouped(
    tmp_path: Path, store: Datastore, demo_frame, monkeypatch
):
    monkeypatch.setattr(datasets, "ROW_GROUP_BYTES", 1 << 16)
    large, small = tmp_path / "large.parquet", tmp_path / "small.parquet"
    demo_frame.to_parquet(large, index=False, row_group_size=2_000)  # about 160 kB a group
    demo_frame.to_parquet(small, index=False, row_group_size=100)
    copied, regrouped = ingest(str(large), store), ingest(str(small), store)
    assert Path(datasets.snapshot_path(store, copied.content_hash)).read_bytes() == large.read_bytes()
    assert regrouped.content_hash == hashlib.sha256(small.read_bytes()).hexdigest()
    assert pq.ParquetFile(regrouped.uri).num_row_groups < pq.ParquetFile(small).num_row_groups
    for ref, path in ((copied, large), (regrouped, small)):
        assert pq.read_table(ref.uri).equals(pq.read_table(path)) and ref.rows == len(demo_frame)


def test_a_parquet_file_with_a_corrupt_page_fails_naming_it_and_leaves_nothing(tmp_path, store, demo_frame):
    path = tmp_path / "damaged.parquet"
    demo_frame.to_parquet(path, index=False)
    damaged = bytearray(path.read_bytes())
    damaged[len(damaged) // 3 : len(damaged) // 3 + 2_000] = bytes(2_000)  # inside a column chunk; the footer intact
    path.write_bytes(bytes(damaged))
    with pytest.raises(DataError, match=r"damaged\.parquet: not a valid Parquet file"):
        ingest(str(path), store)
    assert leftovers(store) == []


def test_unknown_file_type(tmp_path: Path, store: Datastore):
    path = tmp_path / "data.xlsx"
    path.write_bytes(b"whatever")
    with pytest.raises(DataError, match=r"data\.xlsx: unknown file type '\.xlsx'"):
        ingest(str(path), store)


@pytest.mark.parametrize(
    ("url", "message"),
    [("/no/such/dir/data.csv", "file not found"), ("nosuchproto://bucket/data.csv", "cannot open this URL")],
)
def test_unreadable_url(url: str, message: str, store: Datastore):
    with pytest.raises(DataError, match=message) as raised:
        ingest(url, store)
    assert url in str(raised.value)


def test_compressed_csv_is_read(tmp_path: Path, store: Datastore):
    path = tmp_path / "data.csv.gz"
    path.write_bytes(gzip.compress(b"x,y\n1,a\n2,b\n"))
    ref = ingest(str(path), store)
    assert ref.rows == 2 and ref.columns == {"x": "int64", "y": "str"}


def _late_changes(rows: int) -> str:
    """Columns whose first rows suggest a narrower type than the whole file has."""
    lines = ["count,label,day,flag,note"]
    lines += [f"{i},,2026-01-0{1 + i % 9},true,{i}" for i in range(rows)]
    lines += ["1.5,late,2026-01-01 10:30:00,1,text"]
    return "\n".join(lines) + "\n"


def test_streamed_csv_has_the_rows_and_types_of_a_whole_file_read(tmp_path: Path, store: Datastore, monkeypatch):
    monkeypatch.setattr(ingest_module, "CSV_BLOCK_BYTES", 1 << 10)  # many blocks: the late values are blocks away
    monkeypatch.setattr(datasets, "ROW_GROUP_BYTES", 1 << 12)
    path = tmp_path / "late.csv"
    path.write_text(_late_changes(2_000))
    ref = ingest(str(path), store)
    pq.write_table(pacsv.read_csv(path), tmp_path / "whole.parquet")  # the file read at once, as a snapshot
    snapshot, whole = pq.read_table(ref.uri), pq.read_table(tmp_path / "whole.parquet")
    assert snapshot.schema == whole.schema and str(whole.schema.field("count").type) == "double"
    assert snapshot.equals(whole)
    assert ref.rows == 2_001 and ref.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert pq.ParquetFile(ref.uri).num_row_groups > 1  # written block by block


def test_streamed_parquet_keeps_rows_schema_and_source_hash(tmp_path: Path, store: Datastore, demo_frame):
    path = tmp_path / "groups.parquet"
    demo_frame.to_parquet(path, row_group_size=500)
    ref = ingest(str(path), store)
    assert pq.read_table(ref.uri).equals(pq.read_table(path))
    assert ref.content_hash == hashlib.sha256(path.read_bytes()).hexdigest()
    assert ingest(str(path), store) == ref


def test_a_bad_row_far_into_a_csv_fails_naming_the_file_and_leaves_nothing(tmp_path, store, monkeypatch):
    monkeypatch.setattr(ingest_module, "CSV_BLOCK_BYTES", 1 << 10)
    path = tmp_path / "ragged.csv"
    path.write_text("a,b\n" + "1,2\n" * 2_000 + "1,2,3\n")
    with pytest.raises(DataError, match=r"ragged\.csv: not a valid CSV file"):
        ingest(str(path), store)
    assert leftovers(store) == []
