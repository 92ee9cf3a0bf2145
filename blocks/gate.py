"""Gate policy: what a candidate model must reach before it becomes champion."""

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from mlpipe.validation import FORBID_UNKNOWN, Strict

FairnessMetric = Literal["demographic_parity_difference", "equalized_odds_difference"]


class FairnessLimit(Strict):
    """The largest disparity between the groups of a sensitive column that a candidate may show on the test set."""

    metric: FairnessMetric = Field(description="demographic_parity_difference or equalized_odds_difference")
    max: float = Field(ge=0.0, description="the candidate fails when the difference is above this")
    columns: list[str] | None = Field(default=None, description="sensitive columns it applies to; default: all")


class GatePolicy(Block):
    """Absolute threshold on the primary metric plus a margin over the current champion, and an optional
    limit on the disparity between groups of the sensitive columns (`--sensitive`).

    `primary_metric` defaults to ROC-AUC for classification and RMSE for regression; the
    direction (higher or lower is better) follows from the metric.
    """

    _block_type_name = "mlpipe Gate Policy"
    model_config = FORBID_UNKNOWN

    primary_metric: str | None = Field(default=None, description="e.g. roc_auc, f1, rmse; default by task")
    threshold: float | None = Field(default=None, description="the candidate must be at least this good")
    margin: float = Field(default=0.0, ge=0.0, description="how much better than the champion it must be")
    fairness: FairnessLimit | None = Field(
        default=None, description="e.g. {metric: demographic_parity_difference, max: 0.1}; needs --sensitive"
    )
