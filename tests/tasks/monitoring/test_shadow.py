"""A shadowed challenger's agreement with the champion, read back from the captures."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpipe.tasks.monitoring.capture import CaptureWriter
from mlpipe.tasks.monitoring.shadow import ShadowSummary, agreeing_rows, shadow_summary

pytestmark = pytest.mark.unit


def test_labels_agree_when_equal_and_numbers_within_five_percent():
    assert agreeing_rows(pd.Series(["a", "b", "c"]), pd.Series(["a", "x", "c"])) == 2
    assert agreeing_rows(np.array([100.0, 100.0, -10.0]), np.array([104.9, 105.1, -10.4])) == 2


def test_the_summary_counts_only_the_versions_shadowed_rows_across_files(tmp_path: Path):
    root = tmp_path / "captures"
    assert shadow_summary(str(root), "5") == ShadowSummary(version="5", rows=0, agreeing=0)  # nothing captured yet
    writer = CaptureWriter(str(root), sample_rate=1.0, batch_rows=4)
    inputs = pd.DataFrame({"income": [1.0, 2.0, 3.0, 4.0]})
    answers = pd.DataFrame({"prediction": ["no", "no", "yes", "yes"]})
    writer.record("credit", "3", inputs, answers)  # not shadowed
    writer.record("credit", "3", inputs, answers, answers.assign(prediction=["no", "yes", "yes", "no"]), "5")
    writer.record("credit", "4", inputs, answers, answers, "6")  # another challenger
    writer.record("credit", "4", inputs, answers, answers.assign(prediction="yes"), "5")
    writer.close(timeout=10)
    assert writer.counters.files > 1
    summary = shadow_summary(str(root), "5")
    assert summary == ShadowSummary(version="5", rows=8, agreeing=4)
    assert summary.agreement == 0.5
