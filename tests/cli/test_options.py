"""Option values as the command line parses them."""

import pytest

from mlpipe.cli.options import parse_params
from mlpipe.errors import ConfigError

pytestmark = pytest.mark.unit


def test_bad_param_value_is_a_config_error():
    with pytest.raises(ConfigError, match="'x=\\[': expected a single value"):
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


def test_param_values_are_typed_as_a_user_means_them():
    assert parse_params(["max_depth=none", "reg_alpha=1e-5", "gamma=null", "subsample=.5", "n_estimators=200"]) == {
        "max_depth": None,
        "reg_alpha": 1e-5,
        "gamma": None,
        "subsample": 0.5,
        "n_estimators": 200,
    }
