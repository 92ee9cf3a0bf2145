"""Keep a holdout out of training: history rows that the holdout also holds are removed, and counted.

A retraining learns from older data plus the recent window and is judged on the recent window's
holdout. When the history already holds recent rows (a history file that keeps growing), a
challenger would be scored on rows it trained on and look better than it is; the gate would then
not protect the champion.
"""

import pyarrow as pa
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.datasets import DatasetRef, read_table, write_snapshot


class TrainingRows(BaseModel):
    """The rows left to train on, and how many were removed because the holdout holds them too."""

    dataset: DatasetRef
    removed: int


def without_holdout_rows(rows: DatasetRef, holdout: DatasetRef, store: Datastore) -> TrainingRows:
    """`rows` less every row identical to a holdout row in all the columns both have (ids included, when present).

    Identical rows rather than equal ids: a relabelled id (a corrected label) is a different row, and
    data without an id column is covered too. Missing values match missing values.
    """
    table = read_table(rows, store)
    shared = [name for name in holdout.columns if name in rows.columns]
    held = read_table(holdout, store, columns=shared).to_pandas().drop_duplicates()
    marks = table.select(shared).to_pandas().merge(held, on=shared, how="left", indicator=True)["_merge"]
    keep = (marks == "left_only").to_numpy()
    removed = int(len(keep) - keep.sum())
    if removed == 0:
        return TrainingRows(dataset=rows, removed=0)
    kept = write_snapshot(table.filter(pa.array(keep)), store, f"{rows.source} less {removed} holdout rows")
    return TrainingRows(dataset=kept, removed=removed)


without_holdout_rows_task = pipeline_task(without_holdout_rows)
