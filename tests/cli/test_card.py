"""`mlpipe card` as a user runs it: printed, written as HTML, and clear errors for what it cannot do."""

from pathlib import Path

import pytest

from tests.pipeline import run_cli

pytestmark = pytest.mark.e2e


def test_card_prints_and_writes_html_for_an_alias_or_a_version(tmp_path: Path, demo_csv: Path):
    purpose = "Rank credit applications by default risk for manual review"
    trained = run_cli(
        *("train", "--data", str(demo_csv), "--target", "default", "--name", "card-cli"),
        *("--exclude", "application_id", "--param", "n_estimators=20", "--description", purpose),
        cwd=tmp_path,
    )
    assert trained.returncode == 0, trained.stderr[-2000:]

    printed = run_cli("card", "card-cli", cwd=tmp_path)  # a bare name: its champion
    assert printed.returncode == 0, printed.stderr[-2000:]
    assert printed.stdout.startswith("# Model card: card-cli v1")
    assert purpose in printed.stdout
    assert "| `n_estimators` | 20 |" in printed.stdout

    written = run_cli("card", "card-cli/1", "--output", str(tmp_path / "card.html"), cwd=tmp_path)
    assert written.returncode == 0, written.stderr[-2000:]
    html = (tmp_path / "card.html").read_text()
    assert html.startswith("<!doctype html>") and purpose in html and "<h2>Limitations</h2>" in html

    wrong_suffix = run_cli("card", "card-cli/1", "--output", str(tmp_path / "card.txt"), cwd=tmp_path)
    assert wrong_suffix.returncode != 0
    assert "--output" in wrong_suffix.stderr and ".md or .html" in wrong_suffix.stderr
    assert not (tmp_path / "card.txt").exists()

    assert run_cli("card", "card-cli@champion", cwd=tmp_path).stdout == printed.stdout
    missing = run_cli("card", "card-cli/7", cwd=tmp_path)
    assert missing.returncode != 0 and "card-cli" in missing.stderr and "7" in missing.stderr
    logged = run_cli("card", "runs:/abc/model", cwd=tmp_path)
    assert logged.returncode != 0 and "NAME@ALIAS or NAME/VERSION" in logged.stderr
