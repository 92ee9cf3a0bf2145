"""A seeded, realistic credit-default problem with a drift knob, for demos, tests and benchmarks.

`drift` (0 = none, 1 = strong) shifts feature distributions (lower incomes and credit scores,
higher rates, more debt consolidation loans) and changes how features relate to the label
(debt-to-income matters less, recent delinquencies and the region matter more), so a model
trained on undrifted data degrades on drifted data and a retrained one recovers.
"""

import numpy as np
import pandas as pd

PURPOSES = ["debt_consolidation", "credit_card", "home_improvement", "car", "medical", "business", "education", "other"]
REGIONS = ["north", "south", "east", "west", "central"]
HOME = ["RENT", "OWN", "MORTGAGE", "OTHER"]
BASE_COLUMNS = 18
"""Columns before padding: id, timestamp, 15 features, label."""


def credit_default(
    rows: int = 100_000, seed: int = 0, drift: float = 0.0, columns: int = BASE_COLUMNS, start: str = "2025-01-01"
) -> pd.DataFrame:
    """Loan applications with a binary `default` label (about 20% positive without drift).

    Args:
        rows: number of applications.
        seed: every random draw derives from it.
        drift: 0..1, how far distributions and the feature–label relationship move.
        columns: total columns; above 18, weakly informative numeric `signal_NN` columns are added.
        start: first application date (one application every ~30 seconds on average).
    """
    if not 0.0 <= drift <= 1.0:
        raise ValueError(f"drift must be between 0 and 1, got {drift}")
    rng = np.random.default_rng(seed)
    age = rng.integers(21, 75, rows)
    income = rng.lognormal(np.log(52_000) - 0.35 * drift, 0.5, rows).round(2)
    employment = np.clip(rng.gamma(2.0, 3.0, rows), 0, age - 18).round(1)
    credit_score = np.clip(rng.normal(690 - 40 * drift, 55, rows), 300, 850).round()
    loan_amount = np.clip(rng.lognormal(np.log(14_000), 0.6, rows), 500, 100_000).round(-1)
    term = rng.choice(["36 months", "60 months"], rows, p=[0.7, 0.3])
    rate = np.clip(0.32 - credit_score / 3_000 + rng.normal(0.02 * drift, 0.02, rows), 0.03, 0.36).round(4)
    debt_to_income = np.clip(rng.gamma(2.5, 0.07, rows) + 0.05 * drift, 0, 1.5).round(3)
    open_accounts = rng.poisson(7 + 2 * drift, rows)
    delinquencies = rng.poisson(0.3 + 0.4 * drift, rows)
    utilization = np.clip(rng.beta(2, 3, rows) + 0.1 * drift, 0, 1.2).round(3)
    purpose_p = np.array([0.35, 0.2, 0.1, 0.1, 0.05, 0.08, 0.04, 0.08])
    purpose_p = purpose_p + drift * np.array([0.2, -0.05, -0.03, -0.04, 0.0, -0.03, -0.02, -0.03])
    purpose = rng.choice(PURPOSES, rows, p=purpose_p / purpose_p.sum())
    region = rng.choice(REGIONS, rows)
    home = rng.choice(HOME, rows, p=[0.4, 0.15, 0.43, 0.02])
    cosigner = rng.random(rows) < 0.08

    logit = -1.8 + 1.6 * (
        -0.012 * (credit_score - 690) * (1 - 0.3 * drift)
        + 2.2 * (debt_to_income - 0.18) * (1 - 0.8 * drift)
        + (0.45 + 0.6 * drift) * delinquencies
        + 1.1 * (utilization - 0.4)
        + 0.35 * (term == "60 months")
        - 0.45 * np.log(income / 52_000)
        + 0.25 * np.log(loan_amount / 14_000)
        - 0.03 * np.minimum(employment, 10)
        + 8.0 * (rate - 0.1)
        - 0.6 * cosigner
        + np.where(purpose == "business", 0.5, 0.0)
        + drift * np.select([region == "south", region == "east"], [1.0, -0.7], 0.0)
    )
    default = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))

    frame = pd.DataFrame(
        {
            "application_id": np.arange(1, rows + 1, dtype="int64") + seed * 10_000_000,
            "applied_at": pd.Timestamp(start) + pd.to_timedelta(np.sort(rng.integers(0, 30 * rows, rows)), unit="s"),
            "age": age,
            "income": _with_missing(rng, income, 0.05),
            "employment_years": _with_missing(rng, employment, 0.08),
            "credit_score": _with_missing(rng, credit_score, 0.03),
            "loan_amount": loan_amount,
            "loan_term": term,
            "interest_rate": rate,
            "debt_to_income": debt_to_income,
            "open_accounts": open_accounts,
            "delinquencies_2y": delinquencies,
            "credit_utilization": utilization,
            "purpose": pd.Series(purpose).where(rng.random(rows) >= 0.02),
            "region": region,
            "home_ownership": home,
            "has_cosigner": cosigner,
            "default": default.astype("int64"),
        }
    )
    for i in range(max(0, columns - BASE_COLUMNS)):
        weight = 0.05 * ((i % 5) + 1)
        frame.insert(frame.shape[1] - 1, f"signal_{i:02d}", (weight * logit + rng.normal(0, 1, rows)).round(4))
    return frame


def _with_missing(rng: np.random.Generator, values: np.ndarray, fraction: float) -> np.ndarray:
    values = values.astype("float64")
    values[rng.random(len(values)) < fraction] = np.nan
    return values
