"""The champion alias: every move recorded (gate promotions and rollbacks), and rollback from the command line."""

import getpass
import threading
import time
from pathlib import Path

import pytest

from mlpipe.blocks import MlflowConnection, WorkspaceConfig
from mlpipe.tasks.registry.aliases import (
    CHALLENGER,
    alias_history,
    champion_version,
    rollback,
    set_challenger,
    set_champion,
)
from mlpipe.tasks.registry.lock import aliases_lock
from tests.pipeline import max_overlap, run_cli, run_training

pytestmark = pytest.mark.flow

MODEL = "rollback-demo"


def test_rollback_moves_champion_back_and_records_who_why_and_when(
    workspace: WorkspaceConfig, demo_csv: Path, tmp_path: Path
):
    exclude = ["application_id"]
    first = run_training(workspace, data=str(demo_csv), target="default", name=MODEL, exclude=exclude)
    second = run_training(
        workspace,
        data=str(demo_csv),
        target="default",
        name=MODEL,
        exclude=exclude,
        model={"params": {"n_estimators": 30}},
    )
    assert first.error is None and second.error is None
    tracking = workspace.resolve().mlflow
    if champion_version(MODEL, tracking) != second.summary.version:
        set_champion(MODEL, second.summary.version, tracking, reason="release 2", by="alice")
    assert champion_version(MODEL, tracking) == second.summary.version

    env = {"MLFLOW_TRACKING_URI": tracking.tracking_uri or ""}
    result = run_cli("rollback", MODEL, "--reason", "bad release", cwd=tmp_path, extra_env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"champion is now version {first.summary.version}" in result.stdout
    assert champion_version(MODEL, tracking) == first.summary.version

    history = alias_history(MODEL, tracking)
    assert history[0].version == first.summary.version and history[0].by == "mlpipe gate"
    assert history[0].reason.startswith("gate: ")
    last = history[-1]
    assert (last.version, last.previous, last.by) == (first.summary.version, second.summary.version, getpass.getuser())
    assert last.reason == "rollback: bad release" and last.at > history[-2].at

    unknown = run_cli("rollback", MODEL, "--to", "99", cwd=tmp_path, extra_env=env)
    assert unknown.returncode == 1 and "has no version 99" in unknown.stderr
    assert champion_version(MODEL, tracking) == first.summary.version


def test_a_rolled_back_version_is_not_promoted_again_by_a_cached_rerun(workspace: WorkspaceConfig, demo_csv: Path):
    name, exclude = "no-repromotion", ["application_id"]
    weak = run_training(
        workspace, data=str(demo_csv), target="default", name=name, exclude=exclude,
        model={"params": {"n_estimators": 2, "max_depth": 1}},
    )  # fmt: skip
    strong = run_training(workspace, data=str(demo_csv), target="default", name=name, exclude=exclude)
    assert weak.error is None and strong.error is None
    tracking = workspace.resolve().mlflow
    assert champion_version(name, tracking) == strong.summary.version  # the gate promoted the better one
    rollback(name, tracking, to=weak.summary.version, reason="bad release", by="alice")

    rerun = run_training(workspace, data=str(demo_csv), target="default", name=name, exclude=exclude)
    assert rerun.error is None, rerun.error
    assert rerun.task_states["train"] == "Cached" and rerun.summary.version == strong.summary.version
    assert not rerun.summary.gate.passed
    assert f"v{strong.summary.version} was rolled back by alice" in rerun.summary.gate.reason
    assert champion_version(name, tracking) == weak.summary.version  # the rollback holds


def test_writers_of_a_registry_on_a_server_take_turns_through_the_prefect_server():
    tracking = MlflowConnection(tracking_uri="http://127.0.0.1:9", registry_uri="http://127.0.0.1:9")  # never reached
    held: list[tuple[float, float]] = []

    def writer() -> None:
        with aliases_lock("turns", tracking):
            started = time.monotonic()
            time.sleep(0.3)
            held.append((started, time.monotonic()))

    threads = [threading.Thread(target=writer) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(held) == 3 and max_overlap(held) == 1


def test_registrations_at_once_all_set_challenger(tmp_path: Path):
    """Eight versions made challenger at the same instant: MLflow's alias write is a read then an insert, so
    unserialised writers collide on the alias's unique key ("UNIQUE constraint failed")."""
    database = f"sqlite:///{tmp_path / 'mlflow.db'}"
    tracking = MlflowConnection(tracking_uri=database, registry_uri=database)
    client = tracking.client()
    for round_ in range(4):
        name = f"at-once-{round_}"
        client.create_registered_model(name)
        versions = [str(client.create_model_version(name, source=str(tmp_path / f"m{i}")).version) for i in range(8)]
        assert not challengers_at_once(name, versions, tracking)
        assert str(client.get_model_version_by_alias(name, CHALLENGER).version) in versions


def challengers_at_once(name: str, versions: list[str], tracking: MlflowConnection) -> list[BaseException]:
    """Each version made challenger by a thread of its own, all released at once; the errors they met."""
    start = threading.Barrier(len(versions))
    errors: list[BaseException] = []

    def register(version: str) -> None:
        start.wait(timeout=30)
        try:
            set_challenger(name, version, tracking)
        except BaseException as error:  # noqa: BLE001 - reported by the caller
            errors.append(error)

    threads = [threading.Thread(target=register, args=(version,)) for version in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_taking_a_models_lock_again_sends_the_prefect_server_nothing_it_refuses(
    prefect_server_api: str, shared_prefect_home: Path
):
    """The lock's limit is made once: asking the server to create it again was refused (the name is
    taken), and on SQLite that refused write held `prefect server`'s database for a minute against
    every other write at the time (task runs, artifacts), so a command now and then hung that long."""
    from prefect import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists
    from prefect.settings import PREFECT_API_URL, temporary_settings

    tracking = MlflowConnection(tracking_uri="http://127.0.0.1:9", registry_uri="http://127.0.0.1:9")  # never reached
    log = shared_prefect_home / "server.log"
    with temporary_settings({PREFECT_API_URL: prefect_server_api}):
        with aliases_lock("taken-again", tracking):  # makes the model's limit
            pass
        refused = log.read_text().count("Encountered exception in request")
        for _ in range(2):
            with aliases_lock("taken-again", tracking):
                pass
        assert log.read_text().count("Encountered exception in request") == refused, log.read_text()[-2000:]

        # the log shows a refused create, so the count above would have seen one
        with get_client(sync_client=True) as client:
            taken = next(
                limit.name
                for limit in client.read_global_concurrency_limits(limit=200)
                if limit.name.endswith("-taken-again")
            )
            with pytest.raises(ObjectAlreadyExists):
                client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name=taken, limit=1))
    assert log.read_text().count("Encountered exception in request") > refused
