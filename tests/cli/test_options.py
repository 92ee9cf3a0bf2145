"""Option values as the command line parses them."""

import pytest

from mlpipe.cli.options import parse_params
from mlpipe.errors import ConfigError

pytestmark = pytest.mark.unit


def test_bad_param_value_is_a_config_error():
    with pytest.raises(ConfigError, match="'x=\\[': the value is not"):
        parse_params(["x=["])


def test_param_values_are_typed():
    assert parse_params(["max_depth=3", "learning_rate=0.05", "flag=true", "name=hist"]) == {
        "max_depth": 3,
        "learning_rate": 0.05,
        "flag": True,
        "name": "hist",
    }
    with pytest.raises(ConfigError, match="'depth': expected KEY=VALUE"):
        parse_params(["depth"])
