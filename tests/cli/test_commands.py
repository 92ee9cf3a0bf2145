"""The `mlpipe` command as a user runs it: a separate process, exit codes, one-line errors."""

from pathlib import Path

import pytest

from tests.pipeline import run_cli

pytestmark = pytest.mark.e2e


def test_train_registers_a_model_and_exits_zero(tmp_path: Path, demo_csv: Path):
    result = run_cli(
        "train",
        "--data",
        str(demo_csv),
        "--target",
        "default",
        "--name",
        "cli-demo",
        "--model",
        "random_forest",
        "--param",
        "n_estimators=20",
        "--exclude",
        "application_id",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "cli-demo v1" in result.stdout
    assert "Gate passed" in result.stdout
    assert (tmp_path / ".mlpipe" / "mlflow.db").exists()


def test_failure_exits_nonzero_with_one_line_naming_the_problem(tmp_path: Path, demo_csv: Path):
    result = run_cli("train", "--data", str(demo_csv), "--target", "nope", "--name", "cli-bad", cwd=tmp_path)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error:"), result.stderr[-2000:]
    assert "required column(s) ['nope'] missing" in last_line


def test_sweep_with_an_invalid_space_fails_before_any_work_naming_the_parameter(tmp_path: Path, demo_csv: Path):
    space = tmp_path / "space.yaml"
    space.write_text("xgboost:\n  max_depth: {type: int, low: 9, high: 3}\n")
    result = run_cli(
        "sweep",
        "--data",
        str(demo_csv),
        "--target",
        "default",
        "--name",
        "cli-bad-space",
        "--space",
        str(space),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert "parameter 'xgboost.max_depth': low 9 is greater than high 3" in last_line, result.stderr[-2000:]
    assert not (tmp_path / ".mlpipe" / "datastore").exists()  # nothing was ingested


def test_a_partition_that_climbs_out_of_the_output_touches_nothing(tmp_path: Path, demo_csv: Path):
    victim = tmp_path / "x"  # what '2026-01-01/../../x' under out/ would reach
    victim.mkdir()
    (victim / "keep.txt").write_text("not scoring output")
    args = ["--model", "any@champion", "--input", str(demo_csv), "--output", str(tmp_path / "out")]
    result = run_cli("score", *args, "--partition", "2026-01-01/../../x", "--mode", "append", cwd=tmp_path)
    assert result.returncode == 1
    assert "field 'partition'" in result.stderr and "is not a valid name" in result.stderr
    assert (victim / "keep.txt").read_text() == "not scoring output"
    assert not (tmp_path / "out").exists()


def test_a_model_name_with_a_quote_fails_before_any_step(tmp_path: Path, demo_csv: Path):
    result = run_cli("train", "--data", str(demo_csv), "--target", "default", "--name", "o'brien", cwd=tmp_path)
    assert result.returncode == 1
    assert "field 'name'" in result.stderr and '"o\'brien" is not a valid name' in result.stderr
    assert not (tmp_path / ".mlpipe" / "datastore").exists()  # nothing was ingested


def test_a_sensitive_column_the_data_does_not_have_fails_naming_it(tmp_path: Path, demo_csv: Path):
    args = ["--data", str(demo_csv), "--target", "default", "--name", "cli-unfair"]
    result = run_cli("train", *args, "--sensitive", "region", "--sensitive", "nosuchcolumn", cwd=tmp_path)
    assert result.returncode == 1
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error:"), result.stderr[-2000:]
    assert "credit.csv: sensitive column(s) ['nosuchcolumn'] are not in the data; columns present:" in last_line
    assert "'region'" in last_line  # the columns present are listed
