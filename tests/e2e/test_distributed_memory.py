"""Distributed training holds a share of the data per worker: each worker's peak is well under one task's."""

from pathlib import Path

import pytest

from tests.benchmarks.scaling import measure

pytestmark = pytest.mark.e2e


def test_each_worker_of_a_distributed_training_holds_well_under_what_one_task_needs(tmp_path: Path):
    found = measure(1_000_000, tmp_path)  # 700k training rows in 8 partitions; 2 worker processes, then 1
    assert found["worker_2"] < 0.6 * found["worker_1"], (
        f"a worker of two grew {found['worker_2'] / 2**20:.0f} MiB, one task alone {found['worker_1'] / 2**20:.0f} MiB"
    )
