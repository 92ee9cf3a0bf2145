"""Plain functions on small inputs: gate rule, metrics direction, split, contract, configuration."""

import os
from pathlib import Path

import pandas as pd
import pytest
from pydantic import ValidationError

from mlpipe.blocks import DaskCluster, Datastore, GatePolicy, MlflowConnection, WorkspaceConfig
from mlpipe.blocks.config import load_config_file
from mlpipe.cli.options import parse_params
from mlpipe.errors import ConfigError, DataError
from mlpipe.tasks.data.contract_inference import infer_contract, infer_task
from mlpipe.tasks.data.split import SplitSpec, derived_seed, split
from mlpipe.tasks.metrics import is_better
from mlpipe.tasks.model.families import ModelSpec, build_estimator
from mlpipe.tasks.registry.gate import Champion, decide
from tests.pipeline import ingest_frame

# --- gate: the rule that picks the champion, tested on numbers alone -----------------------------


def test_gate_passes_first_model_above_threshold():
    decision = decide("roc_auc", 0.81, GatePolicy(threshold=0.8), champion=None)
    assert decision.passed and decision.reason == "no champion yet"


def test_gate_rejects_below_threshold_even_without_champion():
    decision = decide("roc_auc", 0.79, GatePolicy(threshold=0.8), champion=None)
    assert not decision.passed and "below the threshold 0.8" in decision.reason


def test_gate_needs_more_than_the_margin_over_the_champion():
    policy = GatePolicy(margin=0.01)
    assert not decide("roc_auc", 0.805, policy, Champion(version="3", score=0.80)).passed
    assert decide("roc_auc", 0.811, policy, Champion(version="3", score=0.80)).passed


def test_gate_follows_the_metric_direction():
    assert decide("rmse", 9.0, GatePolicy(), Champion(version="1", score=10.0)).passed
    assert not decide("rmse", 11.0, GatePolicy(), Champion(version="1", score=10.0)).passed
    assert not decide("rmse", 11.0, GatePolicy(threshold=10.5), champion=None).passed


def test_a_tie_does_not_replace_the_champion():
    assert not is_better("roc_auc", 0.8, 0.8)
    assert not is_better("log_loss", 0.3, 0.3)
    assert is_better("log_loss", 0.29, 0.3)


# --- split -----------------------------------------------------------------------------------------


def test_split_is_deterministic_stratified_and_seeded(tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame):
    ref = ingest_frame(demo_frame, tmp_path / "data.parquet", store)
    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    first = split(ref, contract, SplitSpec(seed=1), store)
    again = split(ref, contract, SplitSpec(seed=1), store)
    other = split(ref, contract, SplitSpec(seed=2), store)
    assert first == again
    assert first.test.content_hash != other.test.content_hash
    assert first.train.rows + first.validation.rows + first.test.rows == len(demo_frame)
    rates = [pd.read_parquet(part.uri)["default"].mean() for part in (first.train, first.validation, first.test)]
    assert max(rates) - min(rates) < 0.01
    assert derived_seed(1, "a") != derived_seed(1, "b")


def test_time_ordered_split_puts_newest_rows_in_test(tmp_path: Path, store: Datastore, demo_frame: pd.DataFrame):
    shuffled = demo_frame.sample(frac=1.0, random_state=0)
    ref = ingest_frame(shuffled, tmp_path / "data.parquet", store)
    contract = infer_contract(shuffled, "default", time_column="applied_at", exclude=["application_id"])
    parts = split(ref, contract, SplitSpec(time_ordered=True), store)
    train, test = pd.read_parquet(parts.train.uri), pd.read_parquet(parts.test.uri)
    assert train["applied_at"].max() <= test["applied_at"].min()
    assert "applied_at" not in contract.feature_names


def test_time_ordered_split_without_time_column_is_an_error(tmp_path, store, demo_frame):
    ref = ingest_frame(demo_frame, tmp_path / "data.parquet", store)
    contract = infer_contract(demo_frame, "default")
    with pytest.raises(DataError, match="needs a time column"):
        split(ref, contract, SplitSpec(time_ordered=True), store)


# --- contract and model configuration --------------------------------------------------------------


def test_task_is_inferred_from_the_target():
    assert infer_task(pd.Series([0, 1, 1], name="y")) == "classification"
    assert infer_task(pd.Series(["yes", "no"], name="y")) == "classification"
    assert infer_task(pd.Series([0.5, 1.7, 2.2], name="y")) == "regression"
    assert infer_task(pd.Series(range(100), name="y")) == "regression"


def test_contract_skips_ids_and_timestamps(demo_frame: pd.DataFrame):
    assert "applied_at" not in infer_contract(demo_frame, "default").feature_names  # datetimes are never features
    contract = infer_contract(demo_frame, "default", time_column="applied_at", exclude=["application_id"])
    assert contract.time_column == "applied_at" and "applied_at" not in contract.feature_names
    assert "application_id" not in contract.feature_names
    assert contract.column("region").allowed_values == ["central", "east", "north", "south", "west"]
    assert contract.column("default").allowed_values == [0, 1]
    assert contract.column("age").minimum == 0.0


def test_unknown_hyperparameter_is_named_before_anything_runs():
    with pytest.raises(ValidationError, match=r"model 'xgboost' has no parameter\(s\) \['no_such'\]"):
        ModelSpec(params={"no_such": 1})
    with pytest.raises(ConfigError, match=r"model 'linear' has no parameter\(s\) \['C'\]"):
        build_estimator(ModelSpec(family="linear", params={"C": 2.0}), "regression", n_jobs=1)  # Ridge has alpha
    assert build_estimator(ModelSpec(family="linear"), "regression", n_jobs=1).alpha == 1.0


# --- blocks: local defaults, environment overrides, config files --------------------------------


def test_defaults_live_under_mlpipe_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "home"))
    resolved = WorkspaceConfig().resolve()
    assert resolved.mlflow.tracking_uri == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"
    assert resolved.mlflow.registry_uri == resolved.mlflow.tracking_uri
    assert resolved.mlflow.artifact_location == (tmp_path / "home" / "artifacts").as_uri()
    assert resolved.datastore.url == str(tmp_path / "home" / "datastore")
    assert resolved.cluster.address is None


def test_standard_environment_variables_override_defaults(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    monkeypatch.setenv("MLFLOW_REGISTRY_URI", "http://127.0.0.1:5001")
    monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", "tcp://127.0.0.1:8786")
    resolved = WorkspaceConfig().resolve()
    assert resolved.mlflow.tracking_uri == "http://127.0.0.1:5000"
    assert resolved.mlflow.registry_uri == "http://127.0.0.1:5001"
    assert resolved.mlflow.artifact_location is None  # the server decides
    assert resolved.cluster.address == "tcp://127.0.0.1:8786"
    explicit = MlflowConnection(tracking_uri="sqlite:///x.db").resolve()
    assert explicit.tracking_uri == "sqlite:///x.db"


def test_cluster_settings_become_local_cluster_arguments():
    cluster = DaskCluster(n_workers=2, threads_per_worker=1, adaptive_maximum=4)
    assert cluster.local_cluster_kwargs() == {"processes": False, "n_workers": 2, "threads_per_worker": 1}
    assert cluster.adapt_kwargs() == {"maximum": 4}


def test_config_file_errors_name_the_file_and_field(tmp_path: Path):
    path = tmp_path / "config.yaml"
    path.write_text("cluster:\n  n_workers: zero\n")
    with pytest.raises(ConfigError, match=r"config\.yaml: field 'cluster\.n_workers'"):
        WorkspaceConfig.from_mapping(load_config_file(path), str(path))
    path.write_text("clusters: {}\n")
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['clusters'\]"):
        WorkspaceConfig.from_mapping(load_config_file(path), str(path))
    with pytest.raises(ConfigError, match="not found"):
        load_config_file(tmp_path / "missing.yaml")


def test_mlflow_session_puts_back_exactly_what_was_there(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import mlflow

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    connection = MlflowConnection(tracking_uri=f"sqlite:///{tmp_path / 'a.db'}").resolve()
    with connection.session():
        assert mlflow.get_tracking_uri() == connection.tracking_uri
    assert "MLFLOW_TRACKING_URI" not in os.environ
    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "home"))
    assert MlflowConnection().resolve().tracking_uri == f"sqlite:///{tmp_path / 'home' / 'mlflow.db'}"


def test_one_hot_top_codes_rare_unseen_and_missing_values():
    from mlpipe.tasks.model.preprocessing import OneHotTop

    train = pd.DataFrame({"colour": ["red", "red", "blue", "green", None], "flag": [True, False, True, True, False]})
    encoder = OneHotTop(max_categories=2).fit(train)
    assert list(encoder.get_feature_names_out()) == [
        "colour=red", "colour=blue", "colour=<other>", "colour=<missing>",
        "flag=True", "flag=False", "flag=<other>", "flag=<missing>",
    ]  # fmt: skip
    new = pd.DataFrame({"colour": ["blue", "purple", None], "flag": [False, True, None]})
    assert encoder.transform(new).toarray().tolist() == [
        [0, 1, 0, 0, 0, 1, 0, 0],
        [0, 0, 1, 0, 1, 0, 0, 0],
        [0, 0, 0, 1, 0, 0, 0, 1],
    ]


def test_user_contract_file_is_loaded_and_checked(tmp_path: Path, demo_frame: pd.DataFrame):
    from mlpipe.tasks.contract import DataContract

    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    path = tmp_path / "contract.json"
    path.write_text(contract.to_json())
    assert DataContract.from_file(path) == contract
    path.write_text('{"target": "default", "task": "clustering", "columns": []}')
    with pytest.raises(ConfigError, match=r"contract\.json: field 'task'"):
        DataContract.from_file(path)


def test_multiclass_metrics_and_unknown_primary_metric():
    from mlpipe.tasks.metrics import compute_metrics
    from mlpipe.tasks.registry.gate import primary_metric

    truth = pd.Series(["a", "b", "c", "a"])
    predictions = pd.DataFrame(
        {"prediction": ["a", "b", "b", "a"], "probability_a": [0.8, 0.1, 0.1, 0.7],
         "probability_b": [0.1, 0.8, 0.6, 0.2], "probability_c": [0.1, 0.1, 0.3, 0.1]}
    )  # fmt: skip
    scores = compute_metrics("classification", truth, predictions, ["a", "b", "c"])
    assert scores["accuracy"] == 0.75
    assert scores["roc_auc"] == 1.0  # every true class ranks first in its own column
    with pytest.raises(DataError, match=r"target 'label' has labels \['d'\] the model never saw"):
        compute_metrics("classification", pd.Series(["a", "b", "d", "a"], name="label"), predictions, ["a", "b", "c"])
    with pytest.raises(ConfigError, match="'rmse' is not a classification metric"):
        primary_metric(GatePolicy(primary_metric="rmse"), "classification", scores)


def test_datastore_credentials_come_from_a_prefect_secret(tmp_path: Path):
    from prefect.blocks.system import Secret

    Secret(value='{"auto_mkdir": true}').save("datastore-test-options", overwrite=True)
    store = Datastore(
        url=str(tmp_path), storage_options={"skip_instance_cache": True}, secret_name="datastore-test-options"
    )
    assert store.options() == {"skip_instance_cache": True, "auto_mkdir": True}
    fs, root = store.resolve().filesystem()
    assert fs.auto_mkdir and root == str(tmp_path)


def test_nullable_boolean_objects_are_boolean_features():
    from mlpipe.tasks.contract import column_kind

    assert column_kind(pd.Series([True, None, False], dtype=object)) == "boolean"
    assert column_kind(pd.Series(["a", None, "b"], dtype=object)) == "string"
    assert column_kind(pd.Series([{"a": 1}, None], dtype=object)) is None


def test_class_labels_come_from_the_contract_and_errors_name_them(demo_frame: pd.DataFrame):
    from mlpipe.errors import DataError
    from mlpipe.tasks.model.train import encode_target

    contract = infer_contract(demo_frame, "default", exclude=["application_id"])
    codes, classes = encode_target(pd.Series([1, 0, 1], name="default"), contract, "x#test")
    assert classes == [0, 1] and codes.tolist() == [1, 0, 1]
    with pytest.raises(DataError, match=r"x#test: target 'default' has labels \[2\] outside"):
        encode_target(pd.Series([1, 2], name="default"), contract, "x#test")
    with pytest.raises(DataError, match=r"x#train: target 'default' class\(es\) \[1\] have no rows"):
        encode_target(pd.Series([0, 0], name="default"), contract, "x#train", every_class=True)


def test_artifact_keys_are_valid_for_any_model_name():
    from mlpipe.tasks.links import artifact_key

    assert artifact_key("Team/Credit.Default_v2") == "team-credit-default-v2"


def test_bad_param_value_is_a_config_error():
    with pytest.raises(ConfigError, match="'x=\\[': the value is not"):
        parse_params(["x=["])


def test_a_recreated_workspace_gets_a_new_identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import shutil

    monkeypatch.setenv("MLPIPE_HOME", str(tmp_path / "home"))
    first = Datastore().resolve()
    assert first.workspace and Datastore().resolve() == first  # stable while the workspace lives
    shutil.rmtree(tmp_path / "home")
    assert Datastore().resolve().workspace != first.workspace  # so no cached result points into the old one
    assert Datastore(url=str(tmp_path / "elsewhere")).resolve().workspace is None
