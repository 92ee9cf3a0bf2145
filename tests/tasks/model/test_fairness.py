"""Fairness: group metrics and differences equal the ones worked out by hand, and name the groups that set them."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mlpipe.blocks import Datastore
from mlpipe.errors import ConfigError
from mlpipe.tasks.data.contract_inference import infer_contract, resolve_contract
from mlpipe.tasks.model.fairness import fairness_plot, fairness_report
from tests.pipeline import ingest_frame

pytestmark = pytest.mark.unit

# Ten test rows in three groups; `yes` is the positive class (the second of the model's classes).
#   A:         truth yes yes no no   predicted yes yes yes no  → selection 3/4, accuracy 3/4, recall 2/2, FPR 1/2
#   B:         truth yes yes no no   predicted yes no  no  no  → selection 1/4, accuracy 3/4, recall 1/2, FPR 0/2
#   <missing>: truth yes no          predicted yes yes         → selection 2/2, accuracy 1/2, recall 1/1, FPR 1/1
# Demographic parity: 1.0 (<missing>) − 0.25 (B) = 0.75. Equalised odds: the larger of the recall gap
# (1.0 − 0.5 = 0.5) and the false-positive-rate gap (1.0 − 0.0 = 1.0), set by B against <missing>.
TRUTH = ["yes", "yes", "no", "no", "yes", "yes", "no", "no", "yes", "no"]
PREDICTED = ["yes", "yes", "yes", "no", "yes", "no", "no", "no", "yes", "yes"]
GROUPS = ["A", "A", "A", "A", "B", "B", "B", "B", None, None]


def hand_built() -> tuple[pd.DataFrame, pd.DataFrame]:
    rows = pd.DataFrame({"x": np.arange(10.0), "group": GROUPS, "label": TRUTH})
    chosen = np.array(PREDICTED) == "yes"
    predictions = pd.DataFrame(
        {
            "prediction": PREDICTED,
            "probability_no": np.where(chosen, 0.2, 0.8),
            "probability_yes": np.where(chosen, 0.8, 0.2),
        }
    )
    return rows, predictions


def test_group_metrics_and_differences_equal_the_hand_computed_ones():
    rows, predictions = hand_built()
    contract = infer_contract(rows, "label", exclude=["group"])
    report = fairness_report(rows, predictions, contract, ["group"])
    assert report.positive_class == "yes" and report.rows == 10
    column = report.columns[0]
    assert column.column == "group" and not column.model_input
    by_group = {g.group: g for g in column.groups}
    assert set(by_group) == {"A", "B", "<missing>"}  # nulls are a group of their own
    expected = {  # count, selection rate, accuracy, recall, false-positive rate
        "A": (4, 0.75, 0.75, 1.0, 0.5),
        "B": (4, 0.25, 0.75, 0.5, 0.0),
        "<missing>": (2, 1.0, 0.5, 1.0, 1.0),
    }
    for group, (count, selection, accuracy, recall, fpr) in expected.items():
        measured = by_group[group]
        assert measured.count == count
        assert measured.selection_rate == pytest.approx(selection)
        assert measured.accuracy == pytest.approx(accuracy)
        assert measured.recall == pytest.approx(recall)
        assert measured.false_positive_rate == pytest.approx(fpr)
        assert measured.mae is None
    parity = column.differences["demographic_parity_difference"]
    assert parity.value == pytest.approx(0.75)
    assert (parity.rate, parity.low_group, parity.high_group) == ("selection_rate", "B", "<missing>")
    assert parity.describe() == "selection_rate of group 'B' 0.25 vs '<missing>' 1.00"
    odds = column.differences["equalized_odds_difference"]
    assert odds.value == pytest.approx(1.0)
    assert (odds.rate, odds.low_group, odds.high_group) == ("false_positive_rate", "B", "<missing>")
    assert report.metrics() == {
        "fairness_group_demographic_parity_difference": pytest.approx(0.75),
        "fairness_group_equalized_odds_difference": pytest.approx(1.0),
    }
    assert len(report.table()) == 3 and {"column", "group", "selection_rate"} <= set(report.table()[0])
    figure = fairness_plot(column, report.task)
    assert [t.get_text() for t in figure.axes[0].get_xticklabels()] == [g.group for g in column.groups]


def test_regression_and_multiclass_report_group_errors_without_differences():
    rows, _ = hand_built()
    numbers = rows.assign(label=np.arange(10.0))
    predicted = pd.DataFrame({"prediction": np.arange(10.0) + np.where(np.array(GROUPS) == "A", 2.0, 0.0)})
    report = fairness_report(numbers, predicted, infer_contract(numbers, "label", exclude=["group"]), ["group"])
    by_group = {g.group: g for g in report.columns[0].groups}
    assert by_group["A"].mae == pytest.approx(2.0) and by_group["A"].rmse == pytest.approx(2.0)
    assert by_group["B"].mae == pytest.approx(0.0) and by_group["B"].selection_rate is None
    assert report.columns[0].differences == {} and report.metrics() == {}

    three = rows.assign(label=["a", "b", "c", "a", "b", "c", "a", "b", "c", "a"])
    guesses = pd.DataFrame({"prediction": ["a"] * 10, **{f"probability_{c}": [1 / 3] * 10 for c in "abc"}})
    report = fairness_report(three, guesses, infer_contract(three, "label", exclude=["group"]), ["group"])
    assert report.positive_class is None and report.columns[0].differences == {}
    assert {g.group: g.accuracy for g in report.columns[0].groups} == pytest.approx(
        {"A": 0.5, "B": 0.25, "<missing>": 0.5}  # "a" is right in 2 of 4, 1 of 4, 1 of 2
    )


def test_sensitive_columns_are_not_inferred_features_and_must_be_in_the_data(
    tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame
):
    dataset = ingest_frame(demo_frame, tmp_path / "loans.parquet", store)
    contract = resolve_contract(dataset, "default", "credit", store, exclude=["application_id"], sensitive=["region"])
    assert "region" not in contract.feature_names and "purpose" in contract.feature_names
    with pytest.raises(ConfigError, match=r"loans.parquet: sensitive column\(s\) \['regoin'\] are not in the data; "):
        resolve_contract(dataset, "default", "credit", store, sensitive=["regoin"])
    with pytest.raises(ConfigError, match=r"sensitive column 'credit_score' has \d+ distinct values.*bin it"):
        resolve_contract(dataset, "default", "credit", store, sensitive=["credit_score"])
