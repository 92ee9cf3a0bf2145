"""The one redaction rule: URI passwords, query strings and loaded secrets never reach a reader."""

import logging

import pytest

from mlpipe.blocks import Datastore
from mlpipe.redaction import install_log_redaction, password_of, redact, remember_secret, user_of, with_password

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("http://alice:s3cret@mlflow:5000/#/experiments/1", "http://alice:***@mlflow:5000/#/experiments/1"),
        ("postgresql://mlpipe:s3cret@db/mlflow?sslmode=require", "postgresql://mlpipe:***@db/mlflow?sslmode=***"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        (
            "read https://acct.blob.core.windows.net/c/f.parquet?sv=2024&sig=s3cret failed",
            "read https://acct.blob.core.windows.net/c/f.parquet?sv=***&sig=*** failed",
        ),
        ("s3://bucket/key?s3cret", "s3://bucket/key?***"),
        ("sqlite:////home/me/.mlpipe/mlflow.db and a plain path /tmp/x", None),
        ("postgresql://mlpipe@db/mlflow (no password)", None),
    ],
)
def test_uri_passwords_and_query_strings_are_masked_where_they_stand(text: str, shown: str | None):
    assert redact(text) == (shown or text)


def test_payloads_are_walked_and_loaded_secrets_are_masked_anywhere():
    remember_secret("tok-9f8e7d")
    payload = {"evidence": ["s3://b/x?token=abc", 3, ("k", "the value tok-9f8e7d was used")], "n": 1.5}
    assert redact(payload) == {"evidence": ["s3://b/x?token=***", 3, ("k", "the value *** was used")], "n": 1.5}


def test_credentials_are_put_in_a_uri_only_for_the_driver():
    uri = with_password("postgresql://mlpipe@db:5432/mlflow", None, "p@ss/word")
    assert uri == "postgresql://mlpipe:p%40ss%2Fword@db:5432/mlflow"
    assert password_of(uri) == "p%40ss%2Fword" and user_of(uri) == "mlpipe"
    assert with_password("redis://cache:6379/0", None, "pw") == "redis://:pw@cache:6379/0"
    assert password_of("postgresql://mlpipe@db/mlflow") is None


def test_every_log_record_is_redacted_before_any_handler_sees_it():
    install_log_redaction()
    install_log_redaction()  # idempotent: one wrapper, not two
    records: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(logging.Formatter().format(record))

    logger = logging.getLogger("test.redaction")
    logger.addHandler(Keep())
    try:
        logger.warning("connecting to %s", "redis://:s3cret@cache:6379/0")
        try:
            raise ConnectionError("refused: postgresql://u:s3cret@db/x")
        except ConnectionError:
            logger.exception("failed")
    finally:
        logger.handlers.clear()
    assert records[0] == "connecting to redis://:***@cache:6379/0"
    assert "postgresql://u:***@db/x" in records[1]
    assert not any("s3cret" in record for record in records)


def test_a_dataset_source_label_never_holds_a_token(store: Datastore):
    import pyarrow as pa

    from mlpipe.tasks.datasets import write_snapshot

    ref = write_snapshot(pa.table({"x": [1, 2]}), store, source="https://acct.blob.core.windows.net/c/f.csv?sig=s3cret")
    assert ref.source == "https://acct.blob.core.windows.net/c/f.csv?sig=***"  # shown in tags, artifacts, output
