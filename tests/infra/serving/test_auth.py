"""Callers need a key: none, a wrong one or another scheme get 401; the server refuses to start open by mistake."""

import logging

import httpx
import pytest

from mlpipe.blocks import MlflowConnection
from mlpipe.errors import ConfigError
from mlpipe.infra.serving.auth import KeyCheck, check_exposure, load_keys
from tests.infra.serving.conftest import KEY, auth, running, settings
from tests.infra.serving.models import feature_rows
from tests.pipeline import run_cli


@pytest.mark.e2e
def test_a_missing_or_wrong_key_gets_401_and_keys_are_never_logged(
    classifier: str, tracking: MlflowConnection, caplog: pytest.LogCaptureFixture
):
    body = feature_rows("classification", 1, seed=1).to_dict(orient="records")
    wrong = {
        "none": {},
        "wrong key": {"Authorization": "Bearer not-the-key"},
        "key's prefix": {"Authorization": f"Bearer {KEY[:-1]}"},
        "other scheme": {"Authorization": f"Basic {KEY}"},
    }
    caplog.set_level(logging.DEBUG)
    with running(settings(f"{classifier}@champion"), tracking, keys=f"other-key-xyz,{KEY}") as (base, _):
        refused = {what: httpx.post(f"{base}/predict", json=body, headers=headers) for what, headers in wrong.items()}
        metadata = httpx.get(f"{base}/metadata")
        allowed = httpx.post(f"{base}/predict", json=body, headers=auth())
        probes = [httpx.get(f"{base}/{path}").status_code for path in ("health", "ready", "metrics")]
    assert {what: answer.status_code for what, answer in refused.items()} == dict.fromkeys(wrong, 401)
    assert refused["none"].headers["WWW-Authenticate"] == "Bearer"
    assert metadata.status_code == 401
    assert allowed.status_code == 200
    assert probes == [200, 200, 200]  # probes and Prometheus need no key
    assert KEY not in caplog.text and KEY not in str([answer.text for answer in refused.values()])


@pytest.mark.unit
def test_no_key_refuses_to_start_unless_no_auth(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MLPIPE_API_KEYS", raising=False)
    with pytest.raises(ConfigError, match=r"no API key.*MLPIPE_API_KEYS"):
        load_keys(None, no_auth=False)
    monkeypatch.setenv("MLPIPE_API_KEYS", " , ")
    with pytest.raises(ConfigError, match="no API key"):
        load_keys(None, no_auth=False)
    assert load_keys(None, no_auth=True) == []
    monkeypatch.setenv("MLPIPE_API_KEYS", "a-key-1, b-key-2")
    assert KeyCheck(load_keys(None, no_auth=False)).allows("Bearer b-key-2")


@pytest.mark.unit
def test_no_auth_is_refused_beyond_loopback():
    for host in ("0.0.0.0", "10.1.2.3", "::", "serve.example.com"):
        with pytest.raises(ConfigError, match="--no-auth is refused"):
            check_exposure(host, no_auth=True)
    for host in ("127.0.0.1", "::1", "localhost"):
        check_exposure(host, no_auth=True)
    check_exposure("0.0.0.0", no_auth=False)


@pytest.mark.e2e
def test_the_command_refuses_an_open_endpoint(tmp_path):
    open_to_all = run_cli("serve", "--model", "credit@champion", "--no-auth", "--host", "0.0.0.0", cwd=tmp_path)
    no_key = run_cli("serve", "--model", "credit@champion", cwd=tmp_path, extra_env={"MLPIPE_API_KEYS": ""})
    assert open_to_all.returncode == 1 and "--no-auth is refused on host '0.0.0.0'" in open_to_all.stderr
    assert no_key.returncode == 1 and "no API key" in no_key.stderr
