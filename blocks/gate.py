"""Gate policy: what a candidate model must reach before it becomes champion."""

from prefect.blocks.core import Block
from pydantic import Field

from mlpipe.validation import FORBID_UNKNOWN


class GatePolicy(Block):
    """Absolute threshold on the primary metric plus a margin over the current champion.

    `primary_metric` defaults to ROC-AUC for classification and RMSE for regression; the
    direction (higher or lower is better) follows from the metric.
    """

    _block_type_name = "mlpipe Gate Policy"
    model_config = FORBID_UNKNOWN

    primary_metric: str | None = Field(default=None, description="e.g. roc_auc, f1, rmse; default by task")
    threshold: float | None = Field(default=None, description="the candidate must be at least this good")
    margin: float = Field(default=0.0, ge=0.0, description="how much better than the champion it must be")
