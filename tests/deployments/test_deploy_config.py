"""A deployment config is checked whole before anything is registered: schedules, time zones, windows, names."""

from pathlib import Path

import pytest

from mlpipe.deployments.project import deploy_project
from mlpipe.errors import ConfigError

pytestmark = pytest.mark.unit  # nothing may reach the Prefect API: every error comes first
PROJECT = {
    "training": {"data": "/lake/all.parquet", "target": "default", "name": "credit"},
    "scoring": {"model": "credit@champion", "input": "/lake/new/{window_start:%Y-%m-%d}/", "output": "/lake/out/"},
    "monitoring": {"model": "credit", "target": "default", "current": "/lake/new/", "recent": "/lake/labelled/"},
}


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("scoring", "cron", "0 25 * * *", "'0 25 * * *' is not a cron expression"),
        ("scoring", "timezone", "Mars/Olympus", "'Mars/Olympus' is not an IANA time zone"),
        ("scoring", "input", "/lake/{day:%Y}/", "only {window_start:FORMAT} and {window_end:FORMAT}"),
        ("scoring", "partition", "../elsewhere", "is not a valid name"),
        ("monitoring", "drift_cron", "nightly", "'nightly' is not a cron expression"),
        ("monitoring", "recent", "/lake/{window_start:%Y-%m-%d/", "only {window_start:FORMAT}"),
        ("monitoring", "model", "o'brien", "is not a valid name"),
        ("training", "deployment", "a/b", "is not a valid name"),
        ("training", "name", "credit default", "is not a valid name"),
    ],
)
def test_a_bad_schedule_window_or_name_fails_before_anything_is_registered(
    section: str, key: str, value: str, message: str
):
    sections = {name: dict(values) for name, values in PROJECT.items()}
    sections[section][key] = value
    with pytest.raises(ConfigError, match=rf"project\.yaml, section '{section}': field '{key}'") as raised:
        deploy_project(sections, "project.yaml")
    assert message in str(raised.value)


def test_the_deployment_name_of_nightly_scoring_is_checked(tmp_path: Path):
    from mlpipe.deployments.scoring import deploy_nightly_scoring

    with pytest.raises(ConfigError, match="deployment name: 'night/ly' is not a valid name"):
        deploy_nightly_scoring("credit@champion", str(tmp_path), str(tmp_path / "out"), name="night/ly")
