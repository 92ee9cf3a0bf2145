"""Ingest: bad files fail early with a message that names the file; nothing is left behind."""

import gzip
from pathlib import Path

import pytest

from mlpipe.blocks import Datastore
from mlpipe.errors import DataError
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
