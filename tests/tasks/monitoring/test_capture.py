"""Capture of live traffic: sampled, batched, written whole, and never holding the endpoint up."""

import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from mlpipe.tasks.data.files import list_inputs
from mlpipe.tasks.monitoring.capture import CaptureWriter
from tests.tasks.monitoring.slow_disk import SlowDisk

pytestmark = pytest.mark.unit


def traffic(rows: int, start: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Inputs as the model's contract names them, and the model's answer for each row."""
    ids = np.arange(start, start + rows)
    inputs = pd.DataFrame({"income": ids.astype("float64"), "city": [f"c{i % 3}" for i in ids]})
    yes = (ids % 10) / 10
    predictions = pd.DataFrame({"prediction": np.where(yes > 0.5, "yes", "no"), "probability_no": 1 - yes})
    return inputs, predictions.assign(probability_yes=yes)


def captured(root: Path) -> pd.DataFrame:
    files = sorted(root.rglob("part-*.parquet"))
    return pd.concat([pd.read_parquet(file) for file in files], ignore_index=True) if files else pd.DataFrame()


def wait_until(condition, seconds: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_rows_are_stored_under_the_contract_names_with_the_answers_by_date_and_version(tmp_path: Path):
    writer = CaptureWriter(str(tmp_path / "captures"), sample_rate=1.0)
    inputs, predictions = traffic(30)
    shadow = predictions.assign(prediction="no")
    writer.record("credit", "3", inputs.iloc[:20], predictions.iloc[:20])
    writer.record("credit", "4", inputs.iloc[20:], predictions.iloc[20:], shadow.iloc[20:], shadow_version="5")
    writer.close(timeout=10)

    today = pd.Timestamp.now(tz="UTC").strftime("%Y-%m-%d")
    folders = sorted(str(p.parent.relative_to(tmp_path / "captures")) for p in tmp_path.rglob("part-*.parquet"))
    assert folders == [f"date={today}/model_version=3", f"date={today}/model_version=4"]
    rows = captured(tmp_path / "captures").sort_values("income", ignore_index=True)
    pd.testing.assert_frame_equal(rows[["income", "city"]], inputs, check_dtype=False)
    assert (rows["mlpipe_prediction"] == predictions["prediction"]).all()
    assert rows["mlpipe_probability_yes"].tolist() == pytest.approx(predictions["probability_yes"].tolist())
    assert rows["mlpipe_shadow_prediction"].isna().sum() == 20 and (rows["mlpipe_shadow_prediction"][20:] == "no").all()
    assert rows["mlpipe_shadow_version"].isna().sum() == 20 and (rows["mlpipe_shadow_version"][20:] == "5").all()
    assert set(rows["mlpipe_model"]) == {"credit"} and rows["mlpipe_captured_at"].dt.tz is not None
    assert writer.counters.written == 30 and writer.counters.files == 2


def test_the_sample_rate_takes_that_share_of_rows_and_keeps_each_row_with_its_answer(tmp_path: Path):
    writer = CaptureWriter(str(tmp_path), sample_rate=0.1, seed=7)
    for start in range(0, 20_000, 500):
        writer.record("credit", "1", *traffic(500, start))
    nothing = CaptureWriter(str(tmp_path / "off"), sample_rate=0.0)
    nothing.record("credit", "1", *traffic(500))
    writer.close(timeout=10)
    nothing.close(timeout=10)

    rows = captured(tmp_path)
    assert 1_750 <= len(rows) <= 2_250  # 2,000 expected; ± 5 standard deviations
    assert writer.counters.sampled == writer.counters.written == len(rows) and writer.counters.offered == 20_000
    assert (rows["mlpipe_probability_yes"] == (rows["income"] % 10) / 10).all()  # rows not shuffled apart
    assert nothing.counters.offered == 500 and nothing.counters.sampled == 0 and not (tmp_path / "off").exists()


def test_a_batch_is_written_when_it_holds_batch_rows_or_its_oldest_row_is_batch_seconds_old(tmp_path: Path):
    by_rows = CaptureWriter(str(tmp_path / "rows"), sample_rate=1.0, batch_rows=100, batch_seconds=3_600)
    by_rows.record("m", "1", *traffic(99))
    time.sleep(0.5)
    assert by_rows.counters.files == 0 and by_rows.counters.pending == 99
    by_rows.record("m", "1", *traffic(1, 99))
    wait_until(lambda: by_rows.counters.files == 1)
    assert len(captured(tmp_path / "rows")) == 100

    by_time = CaptureWriter(str(tmp_path / "time"), sample_rate=1.0, batch_rows=100, batch_seconds=0.5)
    began = time.monotonic()
    by_time.record("m", "1", *traffic(5))
    wait_until(lambda: by_time.counters.files == 1)
    assert 0.4 <= time.monotonic() - began < 5 and len(captured(tmp_path / "time")) == 5
    by_rows.close(timeout=10)
    by_time.close(timeout=10)


def test_a_file_is_published_whole_or_not_at_all(tmp_path: Path):
    root = SlowDisk.mount(tmp_path / "store")
    SlowDisk.gate.clear()
    writer = CaptureWriter(root, sample_rate=1.0, batch_rows=10)
    try:
        writer.record("m", "1", *traffic(10))
        assert SlowDisk.writing.wait(10)
        on_disk = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
        assert len(on_disk) == 1 and on_disk[0].name.startswith(".") and on_disk[0].name.endswith(".tmp")
        with pytest.raises(Exception, match="no Parquet"):  # the drift check sees no file while it is written
            list_inputs(str(tmp_path / "store"))
    finally:
        SlowDisk.gate.set()
    writer.close(timeout=10)
    files = [p for p in (tmp_path / "store").rglob("*") if p.is_file()]
    assert [p.name.startswith("part-") for p in files] == [True] and pq.read_table(files[0]).num_rows == 10


def test_a_slow_datastore_costs_dropped_rows_never_memory_or_the_callers_time(tmp_path: Path):
    root = SlowDisk.mount(tmp_path / "store")
    SlowDisk.gate.clear()
    writer = CaptureWriter(root, sample_rate=1.0, batch_rows=100, max_pending_rows=1_000)
    try:
        writer.record("m", "1", *traffic(100))
        assert SlowDisk.writing.wait(10)  # the writer's thread is stuck in the datastore
        waits = []
        for start in range(100, 1_200, 100):
            batch = traffic(100, start)
            began = time.perf_counter()
            writer.record("m", "1", *batch)
            waits.append(time.perf_counter() - began)
        held = writer.counters
        assert held.pending == 1_000 and held.dropped == 200 and held.written == 0
        assert max(waits) < 0.05, waits  # the caller never waits for the datastore
    finally:
        SlowDisk.gate.set()
    writer.close(timeout=10)
    done = writer.counters
    assert (done.written, done.dropped, done.pending, done.failed) == (1_000, 200, 0, 0)
    assert len(captured(tmp_path / "store")) == 1_000


def test_bad_rows_and_a_refusing_datastore_are_counted_and_never_raised(tmp_path: Path):
    blocked = tmp_path / "a-file"
    blocked.write_text("not a folder")
    writer = CaptureWriter(str(blocked / "captures"), sample_rate=1.0)
    inputs, predictions = traffic(10)
    writer.record("m", "1", inputs, predictions.iloc[:5])  # answers that do not match the rows
    writer.record("m", "1", inputs.rename(columns={"city": "mlpipe_model"}), predictions)  # a reserved name
    writer.record("m", "1", inputs, predictions)  # the datastore refuses the write
    writer.close(timeout=10)
    assert writer.counters.failed == 30 and writer.counters.written == 0
    writer.record("m", "1", inputs, predictions)  # after close: dropped, not raised
    assert writer.counters.dropped == 10


def test_bad_settings_are_refused_by_name():
    with pytest.raises(ValueError, match="sample_rate"):
        CaptureWriter("/tmp/x", sample_rate=1.5)
    with pytest.raises(ValueError, match="max_pending_rows"):
        CaptureWriter("/tmp/x", sample_rate=1.0, batch_rows=10, max_pending_rows=5)
