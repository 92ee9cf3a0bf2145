"""Fairness: how a model's decisions and errors differ between the groups of a sensitive column.

Measured on the test split, with the predictions the evaluation made through the logged pyfunc
model, by fairlearn's `MetricFrame` and its difference functions. For a binary classifier the
positive class is the second of the model's classes (as on the ROC curve); per group: the share
of rows predicted positive (selection rate), accuracy, recall (true-positive rate) and
false-positive rate; and per column the demographic-parity difference (the largest gap between
two groups' selection rates) and the equalised-odds difference (the larger of the largest gaps in
recall and in false-positive rate). A group with no positive (negative) label in the test split
has recall (false-positive rate) 0, as fairlearn counts it. Each difference names the pair of
groups that sets it, so a gate that refuses the model can say which group is left behind.

Classifiers of more than two classes have no positive class: only the count and accuracy per
group are reported, with no differences to gate on. Regressions report MAE and RMSE per group.
"""

import json
import re
import time
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel

from mlpipe.blocks.gate import FairnessMetric
from mlpipe.tasks.contract import DataContract, TaskType
from mlpipe.tasks.data.groups import group_labels
from mlpipe.tasks.metrics import PROBABILITY_PREFIX, probability_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure
    from mlflow import MlflowClient

FAIRNESS_ARTIFACT = "evaluation/fairness.json"
SENSITIVE_TAG = "mlpipe.sensitive"
"""The training run's tag listing its sensitive columns (a JSON list): a retraining measures the same."""


class GroupMetrics(BaseModel):
    """One group's numbers on the test split (None where the task has no such metric)."""

    group: str
    count: int
    selection_rate: float | None = None
    accuracy: float | None = None
    recall: float | None = None
    false_positive_rate: float | None = None
    mae: float | None = None
    rmse: float | None = None


class Disparity(BaseModel):
    """A difference between groups and the two groups that set it."""

    value: float
    rate: str
    """The per-group metric the difference is taken on: selection_rate, recall or false_positive_rate."""
    low_group: str
    low: float
    high_group: str
    high: float

    def describe(self) -> str:
        """The pair in words: `selection_rate of group 'F' 0.21 vs 'M' 0.62`."""
        return f"{self.rate} of group '{self.low_group}' {self.low:.2f} vs '{self.high_group}' {self.high:.2f}"


class ColumnFairness(BaseModel):
    """The groups of one sensitive column and the differences between them."""

    column: str
    model_input: bool
    """Whether the model takes the column as a feature too (a contract that lists it)."""
    groups: list[GroupMetrics]
    differences: dict[FairnessMetric, Disparity] = {}
    """Empty for a regression or a classifier of more than two classes."""


class FairnessReport(BaseModel):
    """Group metrics of every sensitive column on the test split."""

    task: TaskType
    positive_class: str | None
    """The class whose selection rate is compared (binary classifiers only)."""
    rows: int
    columns: list[ColumnFairness]

    def column(self, name: str) -> ColumnFairness | None:
        """The report on column `name`, if it is one of the sensitive columns."""
        return next((column for column in self.columns if column.column == name), None)

    def metrics(self) -> dict[str, float]:
        """The differences as MLflow metrics: `fairness_<column>_<difference>`."""
        return {
            metric_name(column.column, metric): disparity.value
            for column in self.columns
            for metric, disparity in column.differences.items()
        }

    def table(self) -> list[dict[str, Any]]:
        """One row per column and group, for a Prefect table artifact."""
        return [
            {
                "column": column.column,
                **{
                    key: round(value, 6) if isinstance(value, float) else value
                    for key, value in group.model_dump(exclude_none=True).items()
                },
            }
            for column in self.columns
            for group in column.groups
        ]


def metric_name(column: str, metric: str) -> str:
    """`fairness_<column>_<metric>`, the column reduced to what MLflow metric names and artifact files hold."""
    return f"fairness_{_safe(column)}_{metric}"


def _safe(column: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", column)


def fairness_report(
    rows: pd.DataFrame, predictions: pd.DataFrame, contract: DataContract, sensitive: list[str]
) -> FairnessReport:
    """Per-group metrics and the differences between groups of each `sensitive` column of `rows`.

    `predictions` are the pyfunc model's output on `rows` (`prediction` and, for a classifier,
    one `probability_<class>` column per class, in the model's class order).
    """
    truth = pd.Series(rows[contract.target].to_numpy())
    predicted = predictions["prediction"].reset_index(drop=True)
    classes = [c.removeprefix(PROBABILITY_PREFIX) for c in probability_columns(predictions)]
    positive = classes[1] if contract.task == "classification" and len(classes) == 2 else None
    columns = []
    for name in sensitive:
        groups = pd.Series(group_labels(rows[name]).to_numpy(), name=name)
        differences: dict[FairnessMetric, Disparity] = {}
        if contract.task == "regression":
            measured = _regression(truth, predicted, groups)
        elif positive is None:
            measured = _multiclass(truth, predicted, groups)
        else:
            measured, differences = _binary(truth.astype(str) == positive, predicted.astype(str) == positive, groups)
        columns.append(
            ColumnFairness(
                column=name, model_input=name in contract.feature_names, groups=measured, differences=differences
            )
        )
    return FairnessReport(task=contract.task, positive_class=positive, rows=len(rows), columns=columns)


def _binary(
    actual: pd.Series, chosen: pd.Series, groups: pd.Series
) -> tuple[list[GroupMetrics], dict[FairnessMetric, Disparity]]:
    from fairlearn.metrics import (
        MetricFrame,
        count,
        demographic_parity_difference,
        equalized_odds_difference,
        false_positive_rate,
        selection_rate,
        true_positive_rate,
    )
    from sklearn.metrics import accuracy_score

    frame = MetricFrame(
        metrics={
            "count": count,
            "selection_rate": selection_rate,
            "accuracy": accuracy_score,
            "recall": true_positive_rate,
            "false_positive_rate": false_positive_rate,
        },
        y_true=actual,
        y_pred=chosen,
        sensitive_features=groups,
    )
    by_group = frame.by_group
    parity = demographic_parity_difference(actual, chosen, sensitive_features=groups)
    odds = equalized_odds_difference(actual, chosen, sensitive_features=groups)
    # Equalised odds is the larger of the recall gap and the false-positive-rate gap: name the one that sets it.
    spreads = {rate: by_group[rate].max() - by_group[rate].min() for rate in ("recall", "false_positive_rate")}
    odds_rate = max(spreads, key=lambda rate: spreads[rate])
    differences: dict[FairnessMetric, Disparity] = {
        "demographic_parity_difference": _disparity(float(parity), by_group["selection_rate"]),
        "equalized_odds_difference": _disparity(float(odds), by_group[odds_rate]),
    }
    return _groups(by_group), differences


def _multiclass(truth: pd.Series, predicted: pd.Series, groups: pd.Series) -> list[GroupMetrics]:
    from fairlearn.metrics import MetricFrame, count
    from sklearn.metrics import accuracy_score

    frame = MetricFrame(
        metrics={"count": count, "accuracy": accuracy_score},
        y_true=truth.astype(str),
        y_pred=predicted.astype(str),
        sensitive_features=groups,
    )
    return _groups(frame.by_group)


def _regression(truth: pd.Series, predicted: pd.Series, groups: pd.Series) -> list[GroupMetrics]:
    from fairlearn.metrics import MetricFrame, count
    from sklearn.metrics import mean_absolute_error, root_mean_squared_error

    frame = MetricFrame(
        metrics={"count": count, "mae": mean_absolute_error, "rmse": root_mean_squared_error},
        y_true=truth.to_numpy(dtype="float64"),
        y_pred=predicted.to_numpy(dtype="float64"),
        sensitive_features=groups,
    )
    return _groups(frame.by_group)


def _groups(by_group: pd.DataFrame) -> list[GroupMetrics]:
    return [
        GroupMetrics(group=str(group), **{key: float(value) for key, value in values.items()})
        for group, values in by_group.astype("float64").iterrows()
    ]


def _disparity(value: float, rates: pd.Series) -> Disparity:
    """`value` (fairlearn's difference) with the groups of the lowest and highest `rates`."""
    low, high = rates.idxmin(), rates.idxmax()
    return Disparity(
        value=value,
        rate=str(rates.name),
        low_group=str(low),
        low=float(rates[low]),
        high_group=str(high),
        high=float(rates[high]),
    )


def log_fairness(report: FairnessReport, run_id: str, client: "MlflowClient") -> None:
    """Store the report with the model's run, a bar plot per column, the differences as metrics, and the
    sensitive columns as a tag (what a retraining of the model measures again)."""
    from mlflow.entities import Metric

    client.log_dict(run_id, report.model_dump(mode="json"), FAIRNESS_ARTIFACT)
    for column in report.columns:
        client.log_figure(run_id, fairness_plot(column, report.task), f"evaluation/fairness_{_safe(column.column)}.png")
    timestamp = int(time.time() * 1000)
    client.log_batch(run_id, metrics=[Metric(name, value, timestamp, 0) for name, value in report.metrics().items()])
    client.set_tag(run_id, SENSITIVE_TAG, json.dumps([column.column for column in report.columns]))


def fairness_plot(column: ColumnFairness, task: TaskType) -> "Figure":
    """Side-by-side bars per group: selection rate and accuracy (classification), MAE and RMSE (regression)."""
    from matplotlib.figure import Figure

    shown = ["mae", "rmse"] if task == "regression" else ["selection_rate", "accuracy"]
    shown = [name for name in shown if any(getattr(group, name) is not None for group in column.groups)]
    positions = np.arange(len(column.groups))
    width = 0.8 / len(shown)
    figure = Figure(figsize=(1.5 + 0.9 * len(column.groups), 4), layout="constrained")
    axis = figure.subplots()
    for offset, name in enumerate(shown):
        values = [getattr(group, name) or 0.0 for group in column.groups]
        axis.bar(positions + offset * width, values, width, label=name.replace("_", " "))
    axis.set_xticks(positions + width * (len(shown) - 1) / 2, [group.group for group in column.groups])
    axis.set(title=f"Test-set metrics by '{column.column}'", xlabel=column.column)
    axis.legend()
    return figure
