"""Drift policy: which test each feature gets, and the thresholds that call it drifted."""

from typing import Literal

from prefect.blocks.core import Block
from pydantic import Field

from mlpipe.validation import FORBID_UNKNOWN


class DriftPolicy(Block):
    """Per-feature drift tests chosen by column kind and sample size, with effect-size thresholds.

    Small samples get significance tests (KS for numbers, chi-square for categories), where a
    p-value is meaningful. Large samples get effect sizes on binned distributions (normalised
    Wasserstein or PSI for numbers, Jensen–Shannon or PSI for categories): at a million rows every
    p-value is tiny, so a significance test would flag differences no model notices.

    The dataset drifts when the drifted features hold `drift_share` of the model's feature
    importance, when the model's scores drift (`prediction_drift`), or when a `critical` feature drifts.
    """

    _block_type_name = "mlpipe Drift Policy"
    model_config = FORBID_UNKNOWN

    small_sample: int = Field(default=1_000, ge=10, description="below this many rows (either side): p-value tests")
    p_value: float = Field(default=0.05, gt=0, lt=1, description="KS / chi-square: drifted below this p-value")
    numeric_test: Literal["wasserstein", "psi"] = Field(default="wasserstein", description="large numeric samples")
    categorical_test: Literal["jensen_shannon", "psi"] = Field(
        default="jensen_shannon", description="large categorical samples"
    )
    wasserstein_threshold: float = Field(default=0.1, gt=0, description="Wasserstein distance / reference std")
    psi_threshold: float = Field(default=0.2, gt=0, description="population stability index")
    jensen_shannon_threshold: float = Field(default=0.1, gt=0, description="Jensen–Shannon distance (base 2)")
    bins: int = Field(default=20, ge=2, description="reference quantile bins for numeric features")
    top_categories: int = Field(
        default=100, ge=1, description="categories counted one by one per feature; the rest count as one 'other'"
    )
    drift_share: float = Field(
        default=0.5,
        gt=0,
        le=1,
        description="dataset drift when the drifted features hold this share of the model's feature importance "
        "(equal weights for a model with none stored)",
    )
    prediction_drift: bool = Field(default=True, description="drift of the model's scores alone is dataset drift")
    critical: list[str] = Field(default_factory=list, description="features whose drift alone is dataset drift")
