"""What a command prints: its progress and summary, whole lines when piped, redacted; library logs on `--verbose`."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from mlpipe.runtime import VERBOSE
from tests.pipeline import run_cli


@pytest.mark.unit
def test_command_output_and_errors_show_no_uri_password_or_token(capsys: pytest.CaptureFixture[str]):
    from rich.table import Table

    from mlpipe.cli.output import out, run
    from mlpipe.errors import DataError

    table = Table("input")
    table.add_row("https://acct.blob.core.windows.net/c/" + "x" * 120 + ".parquet?sv=2024&sig=s3cret")
    out.print(table)
    out.print("MLflow run: http://alice:s3cret@mlflow:5000/#/experiments/1/runs/abc")
    out.print_json(data={"current": ["s3://lake/2026-12-01.parquet?X-Amz-Signature=s3cret"]})
    out.print("Output: " + "y" * 70 + " s3://bucket/out?token=s3cret")  # folded at the console's width

    def fail() -> None:
        raise DataError("cannot open postgresql://mlpipe:s3cret@db/mlflow")

    with pytest.raises(SystemExit):
        run(fail)
    shown = capsys.readouterr()
    assert "s3cret" not in shown.out + shown.err
    assert "token=***" in shown.out and "X-Amz-Signature=***" in shown.out
    assert "http://alice:***@mlflow:5000/#/experiments/1/runs/abc" in shown.out
    assert "error: cannot open postgresql://mlpipe:***@db/mlflow" in shown.err


@pytest.mark.unit
def test_a_piped_table_keeps_every_cell_whole(capsys: pytest.CaptureFixture[str]):
    from rich.table import Table

    from mlpipe.cli.output import out

    row = ["credit_utilization", "wasserstein", "0.2179", "True", "learning_rate=0.0123, max_depth=7, subsample=0.81"]
    table = Table("feature", "test", "statistic", "drifted", "params")
    table.add_row(*row)
    out.print(table)
    shown = capsys.readouterr().out
    assert all(cell in shown for cell in row), shown  # at 80 columns: "credit_u…", "wasserst…"


@pytest.mark.unit
def test_prefects_note_on_draining_its_queues_at_exit_stays_off_the_terminal(tmp_path: Path):
    """Prefect's services send their last events and logs as the process ends, and warn while they do:
    a command's output then ended with "WARNING | EventsWorker - Still processing items"."""
    script = """
import logging
from mlpipe.runtime import configure_process
configure_process()
from mlpipe.cli.startup import preparing_flow
with preparing_flow():
    import prefect.main  # as a command imports its flow: Prefect sets up its logging
logging.getLogger("EventsWorker").warning("Still processing items: 3 items remaining...")
logging.getLogger("EventsWorker").warning("Service failed to send 3 events")
"""
    environment = {**os.environ, "MLPIPE_HOME": str(tmp_path), "PREFECT_API_URL": "http://127.0.0.1:9/api"}
    environment.pop(VERBOSE, None)
    result = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "Still processing items" not in result.stderr
    assert "Service failed to send 3 events" in result.stderr  # Prefect's other warnings still show


LIBRARY_NOISE = (
    "Creating initial MLflow database tables",  # MLflow's database set-up
    "Created temporary directory",  # great-expectations' docs site
    "CloudPickle",  # MLflow on logging a Python model
    "Successfully registered model",  # MLflow's registry
    "Created version",
    "alembic",  # database migrations
    "Finished in state",  # Prefect's line per task run
    "Starting temporary server",
    "Downloading artifacts",  # MLflow's progress bar (a re-run downloads the champion's contract)
)


@pytest.fixture(scope="module")
def piped_training(
    tmp_path_factory: pytest.TempPathFactory, demo_csv: Path, prefect_api: str
) -> tuple[Path, list[str], list[subprocess.CompletedProcess[str]]]:
    """`mlpipe train` with its output piped, twice (the second finds a champion), from a folder whose path is
    longer than a terminal line."""
    cwd = tmp_path_factory.mktemp("output") / ("a-folder-with-a-rather-long-name-" * 3)
    cwd.mkdir(parents=True)
    args = ["train", "--data", str(demo_csv), "--target", "default", "--name", "piped", "--param", "n_estimators=20"]
    args += ["--exclude", "application_id"]
    return cwd, args, [run_cli(*args, cwd=cwd) for _ in range(2)]


@pytest.mark.e2e
def test_a_piped_command_prints_its_progress_and_summary_without_library_noise(
    piped_training: tuple[Path, list[str], list[subprocess.CompletedProcess[str]]],
):
    cwd, _, (result, again) = piped_training
    for run in (result, again):
        assert run.returncode == 0, run.stderr[-3000:]
        shown = run.stdout + run.stderr
        assert not [noise for noise in LIBRARY_NOISE if noise in shown], shown
    for step in ("ingest", "validate", "train", "evaluate", "register"):
        assert result.stderr.count(f" {step}: done") == 1, result.stderr  # once: the steps ran in this process
    assert "champion-contract: done" in again.stderr  # the re-run did read the champion's contract
    store = f"sqlite:///{cwd / '.mlpipe' / 'mlflow.db'}"
    assert len(store) > 80
    assert store in result.stdout  # whole: not folded at 80 columns when piped


@pytest.mark.e2e
def test_verbose_brings_the_library_logs_back_and_a_cached_run_never_loads_great_expectations(
    piped_training: tuple[Path, list[str], list[subprocess.CompletedProcess[str]]],
):
    cwd, args, (first, _) = piped_training
    assert first.returncode == 0, first.stderr[-3000:]
    result = run_cli("--verbose", *args, cwd=cwd, extra_env={"PYTHONPROFILEIMPORTTIME": "1"})
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Finished in state Cached" in result.stderr  # Prefect's own lines: the steps were not run again
    imported = {m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s+(\S+)$", result.stderr, re.M)}
    assert "prefect" in imported
    assert "great_expectations" not in imported  # (the champion's model is still loaded: the gate is never cached)


@pytest.mark.e2e
def test_a_step_failing_on_bad_input_shows_one_error_line_and_no_traceback(tmp_path: Path, prefect_api: str):
    """Prefect logs a failed run's exception with its traceback; mlpipe's own error already names the file."""
    args = ["train", "--data", "missing.csv", "--target", "default", "--name", "nothing"]
    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.rstrip().endswith("error: missing.csv: file not found")
    assert "ingest: failed" in result.stderr
    assert "Traceback" not in result.stderr and "ERROR" not in result.stderr, result.stderr
    verbose = run_cli("--verbose", *args, cwd=tmp_path)
    assert verbose.returncode == 1 and "Traceback" in verbose.stderr  # the libraries' own report, when asked for


@pytest.mark.e2e
def test_a_piped_sweep_shows_each_trials_parameters_whole_and_no_library_warning(
    tmp_path: Path, demo_csv: Path, prefect_api: str
):
    """An AutoML sweep (several families, TPE) piped: optuna warned on every trial, and the leaderboard
    cut each parameter to "xgboost.learni…" at 80 columns."""
    args = ["sweep", "--data", str(demo_csv), "--target", "default", "--name", "piped-sweep", "--space", "auto"]
    result = run_cli(*args, "--max-trials", "4", "--exclude", "application_id", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    shown = result.stdout + result.stderr
    assert not [noise for noise in (*LIBRARY_NOISE, "Warning", "WARNING") if noise in shown], shown
    leaderboard = result.stdout[result.stdout.index("best first") : result.stdout.index("Trials:")]
    rows = [line for line in leaderboard.splitlines() if re.match(r"^\W*\d", line)]
    assert len(rows) == 4 and "…" not in leaderboard, leaderboard
    for row in rows:
        family = row.split("│")[3].strip()
        assert "=" in row and "family=" not in row and f"{family}." not in row, row
