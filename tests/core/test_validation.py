"""Names that become paths and filters are restricted; a misspelt key is named with what was expected."""

import pytest

from mlpipe.blocks import WorkspaceConfig
from mlpipe.errors import ConfigError, validated
from mlpipe.validation import check_name

pytestmark = pytest.mark.unit


@pytest.mark.parametrize("name", ["credit-default", "credit_v2", "2026-01-01", "Team.Model"])
def test_ordinary_names_are_accepted(name: str):
    assert check_name(name) == name


@pytest.mark.parametrize("name", ["o'brien", "2026-01-01/../../x", "..", "", "-rf", "a b", "x/y", "a\\b", "n" * 129])
def test_names_that_could_escape_a_folder_or_a_filter_are_refused(name: str):
    with pytest.raises(ValueError, match="is not a valid name"):
        check_name(name)


def test_an_unknown_key_is_named_with_the_keys_that_were_expected():
    with pytest.raises(ConfigError) as raised:
        validated(WorkspaceConfig, {"gate": {"treshold": 0.9}}, "project.yaml")
    assert str(raised.value) == (
        "project.yaml: unknown field 'gate.treshold'; "
        "expected one of ['fairness', 'margin', 'primary_metric', 'threshold']"
    )
