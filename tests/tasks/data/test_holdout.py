"""History rows the holdout also holds are removed before training, and counted."""

from pathlib import Path

import pandas as pd
import pytest

from mlpipe.blocks import Datastore
from mlpipe.tasks.data.holdout import without_holdout_rows
from mlpipe.tasks.datasets import read_snapshot
from tests.pipeline import ingest_frame

pytestmark = pytest.mark.unit


def test_rows_identical_to_holdout_rows_are_removed_nulls_included(tmp_path: Path, store: Datastore):
    history = pd.DataFrame({"x": [1.0, None, 3.0, 4.0], "region": ["a", "b", None, "d"], "y": [0, 1, 0, 1]})
    holdout = pd.DataFrame({"x": [None, 3.0, 4.0], "region": ["b", None, "d"], "y": [1, 0, 0]})  # the last relabelled
    rows = ingest_frame(history, tmp_path / "history.parquet", store)
    kept = without_holdout_rows(rows, ingest_frame(holdout, tmp_path / "holdout.parquet", store), store)
    assert kept.removed == 2
    left = read_snapshot(kept.dataset, store)
    assert left["x"].tolist() == [1.0, 4.0] and left["y"].tolist() == [0, 1]  # the relabelled row is another row
    unrelated = ingest_frame(history.assign(y=9), tmp_path / "other.parquet", store)
    assert without_holdout_rows(rows, unrelated, store).dataset == rows  # nothing shared: the snapshot as it was
