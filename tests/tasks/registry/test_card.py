"""The model card says what the run logged: its numbers are compared with MLflow's, not only found."""

import json
import re
from pathlib import Path

import pandas as pd
import pytest

from mlpipe.blocks import WorkspaceConfig
from mlpipe.tasks.datasets import read_snapshot
from mlpipe.tasks.model.explanation import EXPLANATION_ARTIFACT
from mlpipe.tasks.registry.card import CARD_HTML, CARD_MARKDOWN, build_card, render_html, render_markdown
from tests.pipeline import run_training

pytestmark = pytest.mark.flow

PURPOSE = "Rank applications <script>alert(1)</script> for review | not for automated refusal"


@pytest.fixture(scope="module")
def trained(workspace: WorkspaceConfig, demo_csv: Path):
    outcome = run_training(
        workspace,
        data=str(demo_csv),
        target="default",
        name="card-demo",
        exclude=["application_id"],
        time_column="applied_at",
        description=PURPOSE,
    )
    assert outcome.error is None, outcome.error
    return outcome.summary


def table_rows(markdown: str, heading: str) -> dict[str, str]:
    """First column → second column of every table row under `## heading` (up to the next heading)."""
    section = markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (.+?) \| (.+?) \|", section, flags=re.MULTILINE)
    return {first.strip("`"): second.strip("`") for first, second in rows if set(first) != {"-"}}


def test_card_numbers_equal_what_the_run_logged(workspace: WorkspaceConfig, trained, tmp_path: Path):
    tracking = workspace.resolve().mlflow
    client = tracking.client()
    run = client.get_run(trained.run_id)
    card = build_card("card-demo", trained.version, tracking)
    markdown = render_markdown(card)

    logged = {key.removeprefix("test_"): value for key, value in run.data.metrics.items() if key.startswith("test_")}
    assert card.metrics == logged
    shown = table_rows(markdown, "Evaluation")
    assert set(shown) - {"metric"} == set(logged)
    for name, value in logged.items():
        assert float(shown[name]) == pytest.approx(value, rel=1e-5), name

    explanation = client.download_artifacts(trained.run_id, EXPLANATION_ARTIFACT, str(tmp_path))
    importances = json.loads(Path(explanation).read_text())["importances"]
    for name, value in table_rows(markdown, "Explanation").items():
        if name != "feature":
            assert float(value) == pytest.approx(importances[name], rel=1e-5), name

    data = table_rows(markdown, "Data")
    splits = trained.splits
    assert data["content hash"] == trained.dataset.content_hash
    assert {split: int(data[f"{split} rows"].replace(",", "")) for split in ("train", "validation", "test")} == {
        "train": splits.train.rows,
        "validation": splits.validation.rows,
        "test": splits.test.rows,
    }
    store = workspace.resolve().datastore
    times = pd.to_datetime(read_snapshot(splits.test, store, ["applied_at"])["applied_at"])
    first, last = data["test period"].split(" … ")
    assert pd.Timestamp(first.removesuffix(" UTC")) == times.min()
    assert pd.Timestamp(last.removesuffix(" UTC")) == times.max()
    assert card.gate == "passed" and f"**passed** — {trained.gate.reason}" in markdown
    assert card.family == run.data.params["family"] == "xgboost"
    assert card.hyperparameters == {"n_estimators": "40"}
    assert "application_id" not in [feature["name"] for feature in card.data.features]


def test_card_is_logged_to_the_run_and_html_escapes_user_text(workspace: WorkspaceConfig, trained, tmp_path: Path):
    tracking = workspace.resolve().mlflow
    client = tracking.client()
    card = build_card("card-demo", trained.version, tracking)
    logged = Path(client.download_artifacts(trained.run_id, CARD_MARKDOWN, str(tmp_path))).read_text()
    assert logged == render_markdown(card)
    assert card.intended_use == PURPOSE
    assert "not for automated refusal" in logged.split("## Intended use", 1)[1].split("##", 1)[0]

    html = Path(client.download_artifacts(trained.run_id, CARD_HTML, str(tmp_path))).read_text()
    assert html == render_html(card)
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<table>" in html
    accuracy = f"{card.metrics['accuracy']:.6g}"
    assert f"<td>accuracy</td>\n<td>{accuracy}</td>" in html
