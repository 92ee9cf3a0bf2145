"""Transient failures are retried safely; cache keys follow code and data, not luck."""

import shutil
from pathlib import Path

import pandas as pd
import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, TaskRunFilter, TaskRunFilterName

from mlpipe.blocks import DaskCluster, Datastore, WorkspaceConfig
from mlpipe.flows.training import TrainingParams, training
from mlpipe.tasks import caching
from mlpipe.tasks.model.evaluate import Evaluation
from mlpipe.tasks.model.families import ModelSpec
from mlpipe.tasks.model.train import TrainedModel
from mlpipe.tasks.registry.champion import champion_contract
from mlpipe.tasks.registry.gate import GateDecision
from mlpipe.tasks.registry.register import promote, register
from tests import source_tree
from tests.flaky_http import flaky_file_server
from tests.pipeline import DATA_TASKS, leftovers, model_versions, run_training

pytestmark = pytest.mark.flow

LATER = ("validate", "split", "train", "evaluate")


def ingest_run_count(flow_run_id: object) -> int:
    with get_client(sync_client=True) as client:
        runs = client.read_task_runs(
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])),
            task_run_filter=TaskRunFilter(name=TaskRunFilterName(like_="ingest")),
        )
    return runs[0].run_count


def test_data_read_failing_twice_is_retried_and_registers_one_version(
    workspace: WorkspaceConfig, data_dir: Path, demo_frame: pd.DataFrame
):
    served = data_dir / "served"
    served.mkdir()
    demo_frame.to_csv(served / "credit.csv", index=False)
    with flaky_file_server(served, failures=2) as (url, handler):
        state = training(
            TrainingParams(
                data=f"{url}/credit.csv",
                target="default",
                name="retry-demo",
                exclude=["application_id"],
                model=ModelSpec(params={"n_estimators": 20}),
            ),
            workspace,
            return_state=True,
        )
        assert state.is_completed(), state.message
        assert len(handler.gets_seen) >= 3  # two refused, then served
    assert ingest_run_count(state.state_details.flow_run_id) == 3
    assert [str(v.version) for v in model_versions(workspace, "retry-demo")] == ["1"]


def test_register_retried_after_it_succeeded_finds_the_same_version(workspace: WorkspaceConfig, demo_csv: Path):
    outcome = run_training(workspace, data=str(demo_csv), target="default", name="idempotent-demo")
    assert outcome.error is None, outcome.error
    tracking = workspace.resolve().mlflow
    version = tracking.client().get_model_version("idempotent-demo", "1")
    model = TrainedModel(
        run_id=outcome.summary.run_id,
        experiment_id=tracking.experiment_id("idempotent-demo"),
        model_uri=version.source,
        task="classification",
        spec=ModelSpec(),
    )
    evaluation = Evaluation(run_id=model.run_id, test_hash="x", metrics=outcome.summary.metrics)
    decision = GateDecision(passed=True, metric="roc_auc", candidate=0.9, threshold=None, margin=0.0, reason="test")

    contract = champion_contract("idempotent-demo", tracking)
    assert contract is not None

    def register_and_promote() -> str:
        registration = register(model, evaluation, outcome.summary.dataset, "idempotent-demo", tracking)
        promote(
            registration,
            decision,
            evaluation=evaluation,
            splits=outcome.summary.splits,
            contract=contract,
            policy=workspace.gate,
            tracking=tracking,
            store=workspace.resolve().datastore,
        )
        return registration.version

    for _ in range(2):  # what a retry after a lost response does
        assert register_and_promote() == "1"
    assert [str(v.version) for v in model_versions(workspace, "idempotent-demo")] == ["1"]

    client = tracking.client()
    recorded = client.get_model_version("idempotent-demo", "1").tags
    for key in ("mlpipe.gate", "mlpipe.dataset_hash", "mlpipe.code_version"):  # a crash right after register_model
        client.delete_model_version_tag("idempotent-demo", "1", key)
    register_and_promote()
    assert client.get_model_version("idempotent-demo", "1").tags == recorded  # completed, nothing overwritten


@pytest.fixture
def editable_tasks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the `mlpipe` package that the Dask workers import instead of the original; returns its `tasks`.

    Workers are spawned with the parent's `sys.path`, so prepending the copy's folder makes
    the next flow run's workers run (and hash) the copied source.
    """
    package = source_tree.build(tmp_path / "code")
    monkeypatch.syspath_prepend(str(package.parent))
    return package / "tasks"


def append_comment(source: Path) -> None:
    source.write_text(source.read_text() + "\n# an edit that changes no behaviour\n")


def test_editing_a_task_or_a_helper_it_uses_invalidates_only_what_depends_on_it(
    workspace: WorkspaceConfig, data_dir: Path, demo_frame: pd.DataFrame, editable_tasks: Path
):
    path = data_dir / "source-edit.parquet"
    demo_frame.to_parquet(path, index=False)
    base = {"data": str(path), "target": "default", "name": "source-demo", "exclude": ["application_id"]}
    # Worker processes (not threads) import the edited copy afresh for each flow run.
    processes = workspace.model_copy(update={"cluster": DaskCluster(n_workers=1, processes=True)})
    assert run_training(processes, **base).error is None

    append_comment(editable_tasks / "data" / "ingest.py")  # no other task imports the ingest module
    edited = run_training(processes, **base)
    assert edited.error is None, edited.error
    assert edited.task_states["ingest"] == "Completed"  # its snapshot is identical, so the rest is reused
    assert {t: edited.task_states[t] for t in LATER} == dict.fromkeys(LATER, "Cached")

    append_comment(editable_tasks / "model" / "families.py")  # a helper of train (and of evaluate, through train)
    helper_edited = run_training(processes, **base)
    assert helper_edited.error is None, helper_edited.error
    assert {t: helper_edited.task_states[t] for t in DATA_TASKS} == dict.fromkeys(DATA_TASKS, "Cached")
    assert helper_edited.task_states["train"] == "Completed"
    assert helper_edited.task_states["evaluate"] == "Completed"


def test_an_upgraded_library_misses_the_cache(
    workspace: WorkspaceConfig, data_dir: Path, demo_frame: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
):
    path = data_dir / "upgrade.parquet"
    demo_frame.to_parquet(path, index=False)
    base = {"data": str(path), "target": "default", "name": "upgrade-demo", "exclude": ["application_id"]}
    assert run_training(workspace, **base).error is None
    assert run_training(workspace, **base).task_states["train"] == "Cached"
    installed = caching.result_libraries()
    monkeypatch.setattr(caching, "result_libraries", lambda: {**installed, "xgboost": "99.0.0"})  # threads: in-process
    upgraded = run_training(workspace, **base)
    assert upgraded.error is None, upgraded.error
    assert {t: upgraded.task_states[t] for t in (*DATA_TASKS, "train")} == dict.fromkeys(
        (*DATA_TASKS, "train"), "Completed"
    )


def test_a_cache_hit_whose_outputs_are_gone_is_recomputed(
    workspace: WorkspaceConfig, data_dir: Path, demo_frame: pd.DataFrame, tmp_path: Path
):
    own = workspace.model_copy(update={"datastore": Datastore(url=str(tmp_path / "store"))})
    path = data_dir / "outputs-gone.parquet"
    demo_frame.to_parquet(path, index=False)
    name = "outputs-gone"
    base = {"data": str(path), "target": "default", "name": name, "exclude": ["application_id"]}
    first = run_training(own, **base)
    assert first.error is None, first.error
    snapshots = leftovers(own.resolve().datastore)

    shutil.rmtree(tmp_path / "store" / "datasets")  # a person cleaning up disk
    rebuilt = run_training(own, **base)
    assert rebuilt.error is None, rebuilt.error  # not FileNotFoundError from a step that trusted the cache
    assert rebuilt.task_states["ingest"] == rebuilt.task_states["split"] == "Completed"  # they wrote the snapshots
    assert rebuilt.task_states["validate"] == "Cached"  # its result is ingest's snapshot, written again
    assert rebuilt.task_states["train"] == "Cached"  # its run is still there
    assert leftovers(own.resolve().datastore) == snapshots  # the same content-addressed snapshots, written again

    client = own.resolve().mlflow.client()
    client.delete_run(first.summary.run_id)
    retrained = run_training(own, **base)
    assert retrained.error is None, retrained.error
    assert retrained.task_states["train"] == "Completed" and retrained.summary.run_id != first.summary.run_id

    client.delete_model_version(name, retrained.summary.version)
    registered = run_training(own, **base)
    assert registered.error is None, registered.error
    assert registered.task_states["train"] == "Cached" and registered.summary.run_id == retrained.summary.run_id
    assert registered.summary.version != retrained.summary.version
    assert client.get_model_version(name, registered.summary.version).run_id == retrained.summary.run_id
