"""Evidently's DataDriftPreset on two Parquet files, run by tests/benchmarks/drift.py in `.venv-evidently`.

Prints one JSON line: the seconds from `Dataset.from_pandas` to the finished snapshot and the
columns whose statistic reached the threshold (Wasserstein normed for numbers, Jensen–Shannon
for categories, both 0.1).

    .venv-evidently/bin/python tests/benchmarks/evidently_drift.py REFERENCE CURRENT CATEGORICAL,…
"""

import json
import sys
import time

import pandas as pd
from evidently import DataDefinition, Dataset, Report
from evidently.presets import DataDriftPreset

THRESHOLD = 0.1


def main() -> None:
    reference, current = pd.read_parquet(sys.argv[1]), pd.read_parquet(sys.argv[2])
    categorical = sys.argv[3].split(",")
    definition = DataDefinition(
        numerical_columns=[c for c in reference.columns if c not in categorical], categorical_columns=categorical
    )
    preset = DataDriftPreset(
        num_method="wasserstein", cat_method="jensenshannon", num_threshold=THRESHOLD, cat_threshold=THRESHOLD
    )
    started = time.perf_counter()
    snapshot = Report([preset]).run(
        Dataset.from_pandas(current, data_definition=definition),
        Dataset.from_pandas(reference, data_definition=definition),
    )
    seconds = time.perf_counter() - started
    drifted = [
        metric["config"]["column"]
        for metric in snapshot.dict()["metrics"]
        if metric["config"]["type"].endswith("ValueDrift") and metric["value"] >= THRESHOLD
    ]
    print(json.dumps({"seconds": seconds, "drifted": drifted}))


if __name__ == "__main__":
    main()
