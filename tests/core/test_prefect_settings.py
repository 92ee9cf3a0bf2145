"""Prefect settings received from a flow are built once per process, and a long-lived process keeps only recent ones."""

import copy
from typing import Any

import pytest
from prefect.context import SettingsContext
from prefect.settings import Settings

from mlpipe.prefect_settings import KEPT, share_settings

pytestmark = pytest.mark.unit


def received(retries: int) -> Settings:
    """The settings object a worker process gets for a flow whose settings differ by `retries`."""
    share_settings()
    data: dict[str, Any] = copy.deepcopy(SettingsContext.get().serialize())
    data["settings"]["tasks"] = {"default_retries": retries}
    return SettingsContext(**data).settings


def test_the_same_settings_are_built_once_and_only_the_most_recently_used_are_kept():
    first = received(1000)
    assert received(1000) is first and first.tasks.default_retries == 1000
    for retries in range(1001, 1000 + KEPT):  # the cache is full, the first one the oldest
        received(retries)
    assert received(1000) is first  # and now the most recently used
    for retries in range(2001, 2000 + KEPT):
        received(retries)
    assert received(1000) is first  # the others were older: kept by use, not by age
    for retries in range(3001, 3001 + KEPT):
        received(retries)
    again = received(1000)
    assert again is not first and again == first  # forgotten once KEPT others came after it; built again
