"""Sensitive columns: the groups of rows a fairness report compares (by sex, age band, region…).

A sensitive column is read for the report, not given to the model (unless a contract lists it as a
feature). Its values are the groups, compared as text; missing values are a group of their own,
since rows whose attribute was not recorded can be treated differently too.
"""

import pandas as pd
import pyarrow.compute as pc

from mlpipe.blocks.datastore import Datastore
from mlpipe.errors import ConfigError
from mlpipe.tasks.datasets import DatasetRef, read_table

MAX_GROUPS = 20
"""A sensitive column with more distinct values (a raw age, an income) must be binned first: per-group rates
over a few rows each are noise, and the largest difference between any two of them grows with their number."""
MISSING_GROUP = "<missing>"


def group_labels(values: pd.Series) -> pd.Series:
    """Each row's group: its value as text, `<missing>` for a null."""
    return values.astype(object).where(values.notna(), MISSING_GROUP).astype(str)


def check_sensitive(dataset: DatasetRef, sensitive: list[str], store: Datastore) -> None:
    """Every sensitive column is in the data and has at most `MAX_GROUPS` groups (nulls count as one).

    Raises:
        ConfigError: a sensitive column the data does not have (a typo would report on nothing), or
            one with too many distinct values, naming the file and the column.
    """
    absent = sorted(set(sensitive) - set(dataset.columns))
    if absent:
        raise ConfigError(
            f"{dataset.source}: sensitive column(s) {absent} are not in the data; "
            f"columns present: {list(dataset.columns)}"
        )
    if not sensitive:
        return
    table = read_table(dataset, store, columns=sorted(set(sensitive)))
    for name in table.column_names:
        groups = pc.count_distinct(table[name], mode="all").as_py()
        if groups > MAX_GROUPS:
            raise ConfigError(
                f"{dataset.source}: sensitive column '{name}' has {groups} distinct values; a fairness report "
                f"compares at most {MAX_GROUPS} groups: bin it into a column of its own (e.g. age bands) and pass that"
            )
