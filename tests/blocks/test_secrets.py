"""Credentials come from a Prefect Secret block or the environment, never from a URI a block stores."""

from pathlib import Path

import pytest

from mlpipe.blocks import Datastore, MlflowConnection, StudyStorage, WorkspaceConfig
from mlpipe.errors import ConfigError
from tests.servers import redis_server

PASSWORD = "planted-Pa55word"


@pytest.mark.flow
def test_datastore_credentials_come_from_a_prefect_secret(tmp_path: Path):
    from prefect.blocks.system import Secret

    Secret(value='{"auto_mkdir": true}').save("datastore-test-options", overwrite=True)
    store = Datastore(
        url=str(tmp_path), storage_options={"skip_instance_cache": True}, secret_name="datastore-test-options"
    )
    assert store.options() == {"skip_instance_cache": True, "auto_mkdir": True}
    fs, root = store.resolve().filesystem()
    assert fs.auto_mkdir and root == str(tmp_path)


@pytest.mark.unit
@pytest.mark.parametrize(
    ("section", "field", "uri"),
    [
        ("mlflow", "tracking_uri", f"http://alice:{PASSWORD}@mlflow:5000"),
        ("mlflow", "registry_uri", f"postgresql://mlpipe:{PASSWORD}@db/registry"),
        ("studies", "url", f"redis://:{PASSWORD}@cache:6379/0"),
        ("datastore", "url", f"s3://key:{PASSWORD}@bucket/mlpipe"),
    ],
)
def test_a_password_in_a_uri_field_is_refused_without_repeating_it(section: str, field: str, uri: str):
    with pytest.raises(ConfigError) as raised:
        WorkspaceConfig.from_mapping({section: {field: uri}}, "project.yaml")
    message = str(raised.value)
    assert f"project.yaml: field '{section}.{field}'" in message
    assert "holds a password" in message and "secret_name" in message
    assert PASSWORD not in message


@pytest.mark.unit
@pytest.mark.parametrize(
    ("variable", "block"),
    [
        ("MLFLOW_TRACKING_URI", MlflowConnection),
        ("MLFLOW_REGISTRY_URI", MlflowConnection),
        ("MLPIPE_STUDY_STORAGE", StudyStorage),
    ],
)
def test_a_password_in_a_uri_from_the_environment_is_refused(
    monkeypatch: pytest.MonkeyPatch, variable: str, block: type[MlflowConnection | StudyStorage]
):
    monkeypatch.setenv(variable, f"postgresql://mlpipe:{PASSWORD}@db/x")
    with pytest.raises(ConfigError) as raised:
        block().resolve()
    assert f"environment variable {variable}" in str(raised.value) and PASSWORD not in str(raised.value)


@pytest.mark.flow
def test_study_storage_password_comes_from_a_secret_or_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import optuna
    import redis
    from prefect.blocks.system import Secret

    with redis_server(PASSWORD, tmp_path) as url:
        Secret(value=PASSWORD).save("study-storage-password", overwrite=True)
        storage = StudyStorage(url=url, secret_name="study-storage-password").resolve()
        assert storage.url == url  # what flows carry and show: no password
        optuna.create_study(study_name="from-secret", storage=storage.open()).optimize(lambda t: 1.0, n_trials=1)

        monkeypatch.setenv("MLPIPE_STUDY_STORAGE", url.replace("/0", "/1"))
        monkeypatch.setenv("MLPIPE_STUDY_STORAGE_PASSWORD", PASSWORD)
        from_env = StudyStorage().resolve()
        optuna.create_study(study_name="from-env", storage=from_env.open()).optimize(lambda t: 1.0, n_trials=1)

        monkeypatch.delenv("MLPIPE_STUDY_STORAGE_PASSWORD")
        with pytest.raises(redis.exceptions.AuthenticationError):
            StudyStorage(url=url.replace("/0", "/2")).resolve().open()


@pytest.mark.flow
def test_an_mlflow_server_password_is_sent_as_basic_auth_never_in_the_uri(monkeypatch: pytest.MonkeyPatch):
    from prefect.blocks.system import Secret

    for variable in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD"):
        monkeypatch.setenv(variable, "")  # restored after the test: the connection sets them for MLflow
        monkeypatch.delenv(variable)
    Secret(value=PASSWORD).save("mlflow-test-password", overwrite=True)
    connection = MlflowConnection(tracking_uri="http://alice@127.0.0.1:9", secret_name="mlflow-test-password")
    client = connection.resolve().client()
    sent = client._tracking_client.store.get_host_creds()  # what MLflow's REST store authenticates each request with
    assert (sent.username, sent.password) == ("alice", PASSWORD)
    assert PASSWORD not in sent.host and PASSWORD not in client.tracking_uri
