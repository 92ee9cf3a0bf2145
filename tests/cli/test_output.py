"""What a command prints passes the redaction rule: results, tables and one-line errors."""

import pytest

pytestmark = pytest.mark.unit


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
