"""Sweeps across processes: a killed sweep resumes; GPU trials go to GPU workers of a real scheduler."""

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from optuna.trial import TrialState
from prefect.settings import PREFECT_API_URL

from mlpipe.blocks import DaskCluster, StudyStorage, WorkspaceConfig
from mlpipe.errors import ConfigError
from mlpipe.tasks.sweep.space import parse_space
from tests.pipeline import MLPIPE, cli_environment, max_overlap, run_cli, run_sweep, wait_for

pytestmark = pytest.mark.e2e

SPACE_YAML = """\
xgboost:
  n_estimators: 400
  max_depth: {type: int, low: 5, high: 8}
  learning_rate: {type: loguniform, low: 0.02, high: 0.3}
"""


def test_killed_sweep_resumes_without_repeating_finished_trials(tmp_path: Path, demo_csv: Path):
    space = tmp_path / "space.yaml"
    space.write_text(SPACE_YAML)
    args = [
        "sweep",
        "--data",
        str(demo_csv),
        "--target",
        "default",
        "--name",
        "resume-demo",
        "--space",
        str(space),
        "--max-trials",
        "7",
        "--max-concurrent",
        "1",
        "--sampler",
        "random",
        "--pruner",
        "none",
        "--study",
        "resume-demo",
        "--exclude",
        "application_id",
    ]
    log = tmp_path / "first-run.log"
    sweeping = subprocess.Popen(
        [MLPIPE, *args],
        cwd=tmp_path,
        env=cli_environment(tmp_path),
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    storage = StudyStorage(url=str(tmp_path / ".mlpipe" / "optuna.journal")).open()

    def states() -> list[TrialState]:
        assert sweeping.poll() is None, log.read_text()[-3000:]
        if "resume-demo" not in optuna.get_all_study_names(storage):
            return []
        return [t.state for t in optuna.load_study(study_name="resume-demo", storage=storage).get_trials()]

    try:
        wait_for(lambda: states().count(TrialState.COMPLETE) >= 2 and TrialState.RUNNING in states(), 240, "trials")
    finally:
        os.killpg(sweeping.pid, signal.SIGKILL)
        sweeping.wait()
    before = optuna.load_study(study_name="resume-demo", storage=storage).get_trials()
    done_before = {t.number: (t.params, t.value) for t in before if t.state == TrialState.COMPLETE}
    interrupted = [t for t in before if t.state == TrialState.RUNNING]
    assert len(interrupted) == 1

    result = run_cli(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"resumed [{interrupted[0].number}]" in result.stdout
    after = optuna.load_study(study_name="resume-demo", storage=storage).get_trials()
    for number, (params, value) in done_before.items():  # finished trials are kept as they were
        assert (after[number].state, after[number].params, after[number].value) == (TrialState.COMPLETE, params, value)
    rerun = [t for t in after if t.user_attrs.get("mlpipe.retry_of") == interrupted[0].number]
    assert len(rerun) == 1 and rerun[0].params == interrupted[0].params and rerun[0].state == TrialState.COMPLETE
    complete = [t for t in after if t.state == TrialState.COMPLETE]
    assert len(complete) == 7  # the budget, with no finished trial run twice
    assert len({tuple(sorted(t.params.items())) for t in complete}) == 7


@pytest.fixture
def gpu_cluster() -> object:
    """A real scheduler with one plain worker process and one `dask worker` that advertises a GPU."""
    env = {"PREFECT_API_URL": PREFECT_API_URL.value()}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, env=env, dashboard_address=":0") as cluster:
        worker = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "dask"),
                "worker",
                cluster.scheduler_address,
                "--nthreads",
                "2",
                "--resources",
                "GPU=1",
                "--name",
                "gpu-worker",
                "--no-dashboard",
                "--host",
                "127.0.0.1",
            ],
            env={**os.environ, **env},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            with Client(cluster.scheduler_address) as client:
                client.wait_for_workers(2, timeout=120)
                gpu_address = next(
                    address
                    for address, info in client.scheduler_info(n_workers=-1)["workers"].items()
                    if info.get("resources", {}).get("GPU")
                )
            yield cluster.scheduler_address, gpu_address
        finally:
            worker.terminate()
            worker.wait(timeout=60)


def test_gpu_trials_run_on_gpu_workers_with_study_storage_in_redis(
    workspace: WorkspaceConfig, demo_frame: pd.DataFrame, tmp_path: Path, gpu_cluster: tuple[str, str]
):
    scheduler, gpu_address = gpu_cluster
    data = tmp_path / "gpu.parquet"
    demo_frame.to_parquet(data, index=False)
    remote = workspace.model_copy(
        update={
            "cluster": DaskCluster(address=scheduler),
            "studies": StudyStorage(url="redis://127.0.0.1:6379/15"),  # shared by workers that share no disk
        }
    )
    space = parse_space({"linear": {"C": {"type": "loguniform", "low": 0.01, "high": 10}}}, "t")
    name = f"gpu-{uuid.uuid4().hex[:8]}"
    outcome = run_sweep(
        remote,
        data=str(data),
        name=name,
        space=space,
        max_trials=4,
        gpu=True,
        study_name=name,
        study={"sampler": "random", "pruner": {"kind": "none"}},
    )
    assert outcome.error is None, outcome.error
    trials = optuna.load_study(study_name=name, storage=remote.resolve().studies.open()).get_trials()
    assert {t.user_attrs["worker"] for t in trials} == {gpu_address}
    # With no --max-concurrent, a GPU sweep runs as many trials at once as there are GPUs.
    assert max_overlap([(t.user_attrs["started"], t.user_attrs["finished"]) for t in trials]) == 1


def test_gpu_sweep_without_gpu_workers_fails_before_any_trial(workspace: WorkspaceConfig, demo_csv: Path):
    space = parse_space({"linear": {"C": {"type": "loguniform", "low": 0.01, "high": 10}}}, "t")
    outcome = run_sweep(workspace, data=str(demo_csv), name="gpu-missing", space=space, max_trials=2, gpu=True)
    assert isinstance(outcome.error, ConfigError)
    assert "GPU resource" in str(outcome.error)
