"""Benchmark: mlpipe's drift statistics versus Evidently's DataDriftPreset and a bare numpy floor, in one run.

Data: 1M reference rows and 1M current rows × 20 features (16 numeric of four shapes, 4
categorical), the current data drawn from the same generator with a different seed, and three
columns changed on purpose: a numeric mean shift (0.5 std), a numeric spread change (× 1.5) and
a categorical mix reversed. Every contender uses the same tests and thresholds: normalised
Wasserstein > 0.1 for numbers, Jensen–Shannon distance > 0.1 for categories.

- mlpipe: `Baseline.of` the reference, `profile` both sides, `column_drift` per feature and
  `dataset_drift` — what a drift check computes, in memory, in this process; and the same with the
  current data cut into 4 partitions whose profiles are merged (what Dask workers do).
- floor: bare numpy on the same binned statistics (quantile edges, `searchsorted` + `bincount`,
  binned Wasserstein; pandas `value_counts` for categories), nothing else.
- Evidently 0.7 (`Report([DataDriftPreset(num_method="wasserstein", cat_method="jensenshannon",
  num_threshold=0.1, cat_threshold=0.1)])`, timed from `Dataset.from_pandas` to the snapshot): it
  imports pandas internals that pandas 3 removed, so it runs in its own virtual environment
  (`.venv-evidently`, made by `make bench`) as a child process on the same Parquet files, its data
  read before the clock starts.

Goals: mlpipe / Evidently ≤ 0.05, mlpipe / floor ≤ 2, and the three changed columns exactly the
ones flagged by all three. mlpipe and the floor run `--repeats` times, interleaved; medians count.

    python -m tests.benchmarks.drift [--rows 1000000] [--repeats 3]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon

from mlpipe.blocks.drift import DriftPolicy
from mlpipe.tasks.monitoring.drift import binned_wasserstein, column_drift, dataset_drift
from mlpipe.tasks.monitoring.profiles import Baseline, quantile_edges

NUMERIC = [f"n{i:02d}" for i in range(16)]
CATEGORICAL = [f"c{i}" for i in range(4)]
SHIFTED = {"n00", "n05", "c1"}
EVIDENTLY_PYTHON = Path(".venv-evidently/bin/python")
LEVELS = np.array(["north", "south", "east", "west", "other"])


def generate(rows: int, seed: int, drift: bool) -> pd.DataFrame:
    """Normal, log-normal, uniform and Poisson columns and categories of five levels."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for index, name in enumerate(NUMERIC):
        shape = index % 4
        if shape == 0:
            columns[name] = rng.normal(0.5 if drift and name == "n00" else 0.0, 1.0, rows)
        elif shape == 1:
            columns[name] = rng.lognormal(0.0, 0.6 * (1.5 if drift and name == "n05" else 1.0), rows)
        elif shape == 2:
            columns[name] = rng.uniform(-2, 2, rows)
        else:
            columns[name] = rng.poisson(4, rows).astype("float64")
    weights = np.array([0.35, 0.25, 0.2, 0.15, 0.05])
    for name in CATEGORICAL:
        mix = weights[::-1] if drift and name == "c1" else weights
        columns[name] = LEVELS[rng.choice(len(LEVELS), rows, p=mix)]
    return pd.DataFrame(columns)


def mlpipe(reference: pd.DataFrame, current: pd.DataFrame, policy: DriftPolicy, parts: int = 1) -> set[str]:
    """The drift check's statistics: bins from the reference, profiles of both sides, tests, verdict."""
    baseline = Baseline.of(reference, policy)
    reference_profile = baseline.profile(reference, seed=0)
    slices = np.array_split(np.arange(len(current)), parts)
    profiles = [baseline.profile(current.iloc[rows], seed=index) for index, rows in enumerate(slices)]
    current_profile = profiles[0]
    for profile in profiles[1:]:
        current_profile = baseline.merge(current_profile, profile)
    results = [
        column_drift(name, baseline, reference_profile.columns[name], current_profile.columns[name], policy)
        for name in reference.columns
    ]
    return set(dataset_drift(results, policy).drifted_features)


def numpy_floor(reference: pd.DataFrame, current: pd.DataFrame, policy: DriftPolicy) -> set[str]:
    """The same binned statistics with nothing around them."""
    drifted = set()
    for name in NUMERIC:
        ref, cur = reference[name].to_numpy(), current[name].to_numpy()
        edges = quantile_edges(ref, policy.bins)
        expected = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
        actual = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=len(edges) + 1)
        if binned_wasserstein(expected, actual, edges) / np.std(ref) > policy.wasserstein_threshold:
            drifted.add(name)
    for name in CATEGORICAL:
        counts = pd.DataFrame({"r": reference[name].value_counts(), "c": current[name].value_counts()}).fillna(0)
        if jensenshannon(counts["r"], counts["c"], base=2) > policy.jensen_shannon_threshold:
            drifted.add(name)
    return drifted


def evidently(reference: Path, current: Path) -> tuple[float, set[str]]:
    """Evidently's wall time and flagged columns, from its own environment."""
    if not EVIDENTLY_PYTHON.exists():
        sys.exit(f"{EVIDENTLY_PYTHON} is missing: `make bench` creates it")
    script = Path(__file__).with_name("evidently_drift.py")
    output = subprocess.run(
        [str(EVIDENTLY_PYTHON), str(script), str(reference), str(current), ",".join(CATEGORICAL)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    result = json.loads(output.strip().splitlines()[-1])
    return float(result["seconds"]), set(result["drifted"])


def timed(run: Callable[[], set[str]]) -> tuple[float, set[str]]:
    started = time.perf_counter()
    flagged = run()
    return time.perf_counter() - started, flagged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    policy = DriftPolicy()
    reference, current = generate(args.rows, seed=1, drift=False), generate(args.rows, seed=2, drift=True)
    folder = Path(tempfile.mkdtemp(prefix="mlpipe-bench-drift-"))
    reference.to_parquet(folder / "reference.parquet", index=False)
    current.to_parquet(folder / "current.parquet", index=False)
    print(f"{args.rows:,} × {reference.shape[1]} reference vs current; changed on purpose: {sorted(SHIFTED)}")

    times: dict[str, list[float]] = {"mlpipe": [], "mlpipe, 4 partitions": [], "numpy floor": []}
    flags: dict[str, set[str]] = {}
    for _ in range(args.repeats):
        for name, run in (
            ("mlpipe", lambda: mlpipe(reference, current, policy)),
            ("mlpipe, 4 partitions", lambda: mlpipe(reference, current, policy, parts=4)),
            ("numpy floor", lambda: numpy_floor(reference, current, policy)),
        ):
            seconds, flags[name] = timed(run)
            times[name].append(seconds)
    evidently_seconds, flags["Evidently"] = evidently(folder / "reference.parquet", folder / "current.parquet")
    median = {name: statistics.median(values) for name, values in times.items()}
    median["Evidently"] = evidently_seconds

    for name, seconds in median.items():
        verdict = "exactly the changed columns" if flags[name] == SHIFTED else f"MISMATCH: {sorted(flags[name])}"
        print(f"  {name:<22} {seconds:8.3f} s   flagged {verdict}")
    print(f"mlpipe / Evidently:            {median['mlpipe'] / median['Evidently']:.4f}  (goal ≤ 0.05)")
    print(f"mlpipe / numpy floor:          {median['mlpipe'] / median['numpy floor']:.3f}  (goal ≤ 2)")
    print(f"4 partitions / one:            {median['mlpipe, 4 partitions'] / median['mlpipe']:.3f}")
    agree = all(flagged == SHIFTED for flagged in flags.values())
    print(f"per-column verdicts agree:     {agree}")
    if not agree:
        sys.exit(1)


if __name__ == "__main__":
    main()
