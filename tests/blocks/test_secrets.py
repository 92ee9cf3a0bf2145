"""Credentials come from a Prefect Secret block, never from the block itself."""

from pathlib import Path

import pytest

from mlpipe.blocks import Datastore

pytestmark = pytest.mark.flow


def test_datastore_credentials_come_from_a_prefect_secret(tmp_path: Path):
    from prefect.blocks.system import Secret

    Secret(value='{"auto_mkdir": true}').save("datastore-test-options", overwrite=True)
    store = Datastore(
        url=str(tmp_path), storage_options={"skip_instance_cache": True}, secret_name="datastore-test-options"
    )
    assert store.options() == {"skip_instance_cache": True, "auto_mkdir": True}
    fs, root = store.resolve().filesystem()
    assert fs.auto_mkdir and root == str(tmp_path)
