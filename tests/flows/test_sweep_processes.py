"""Sweeps across processes: a killed sweep resumes, two sweeps of one study do not mix, a tracking server
blip fails only its trials, a GPU sweep with no GPU worker fails before its first trial."""

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import optuna
import pytest
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from mlpipe.blocks import MlflowConnection, StudyStorage, WorkspaceConfig
from mlpipe.errors import ConfigError
from mlpipe.tasks.sweep.space import parse_space
from mlpipe.tasks.sweep.study import INTERRUPTED
from tests import servers
from tests.flaky_http import flaky_proxy
from tests.pipeline import MLPIPE, cli_environment, run_cli, run_sweep, study_trials, wait_for

pytestmark = pytest.mark.e2e

SPACE_YAML = """\
xgboost:
  n_estimators: 400
  max_depth: {type: int, low: 5, high: 8}
  learning_rate: {type: loguniform, low: 0.02, high: 0.3}
"""


def sweep_in_background(args: list[str], cwd: Path, log: Path) -> "subprocess.Popen[bytes]":
    """`mlpipe ARGS` as a process group of its own (killed with all it started), its output in `log`."""
    return subprocess.Popen(
        [MLPIPE, *args],
        cwd=cwd,
        env=cli_environment(cwd),
        start_new_session=True,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
    )


def live_trials(process: "subprocess.Popen[bytes]", log: Path, storage: BaseStorage, study: str) -> list[FrozenTrial]:
    """The study's trials while `process` runs (none before it creates the study)."""
    assert process.poll() is None, log.read_text()[-3000:]
    if study not in optuna.get_all_study_names(storage):
        return []
    return optuna.load_study(study_name=study, storage=storage).get_trials()


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
    sweeping = sweep_in_background(args, tmp_path, log)
    storage = StudyStorage(url=str(tmp_path / ".mlpipe" / "optuna.journal")).open()

    def states() -> list[TrialState]:
        # A trial counts as running once its parameters are drawn: killed before that, it has none to resume.
        trials = live_trials(sweeping, log, storage, "resume-demo")
        return [TrialState.WAITING if t.state == TrialState.RUNNING and not t.params else t.state for t in trials]

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


def test_of_two_sweeps_of_one_study_started_together_one_runs_and_the_other_fails_naming_it(
    tmp_path: Path, demo_csv: Path
):
    space = tmp_path / "space.yaml"
    space.write_text("linear:\n  C: {type: loguniform, low: 0.01, high: 10}\n")
    args = [
        "sweep",
        *("--data", str(demo_csv), "--target", "default", "--name", "shared-demo", "--space", str(space)),
        *("--max-trials", "100", "--timeout", "30", "--max-concurrent", "1"),  # trials for 30 s, then finish
        *("--sampler", "random", "--pruner", "none", "--study", "shared-demo", "--exclude", "application_id"),
    ]
    # The workspace's MLflow database exists already, as after any earlier run (two processes that
    # both create a SQLite tracking store at once collide in its migrations, which is not this test).
    MlflowConnection(
        tracking_uri=f"sqlite:///{tmp_path / '.mlpipe' / 'mlflow.db'}"
    ).resolve().client().search_experiments()
    logs = [tmp_path / "sweep-a.log", tmp_path / "sweep-b.log"]
    sweeps = [sweep_in_background(args, tmp_path, log) for log in logs]
    try:
        codes = [process.wait(timeout=400) for process in sweeps]
    finally:
        for process in sweeps:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    output = [" ".join(log.read_text().split()) for log in logs]
    assert sorted(codes) == [0, 1], [text[-2000:] for text in output]
    winner = codes.index(0)
    refusal = output[1 - winner]
    assert "study 'shared-demo' is in use by another sweep" in refusal, refusal[-2000:]
    assert f"pid {sweeps[winner].pid}" in refusal and " since 20" in refusal, refusal[-2000:]
    storage = StudyStorage(url=str(tmp_path / ".mlpipe" / "optuna.journal")).open()
    trials = optuna.load_study(study_name="shared-demo", storage=storage).get_trials()
    assert len(trials) >= 2
    assert all(t.state == TrialState.COMPLETE for t in trials), [(t.number, t.state) for t in trials]
    assert not [t for t in trials if t.user_attrs.get(INTERRUPTED) or "mlpipe.retry_of" in t.user_attrs]
    assert len({tuple(sorted(t.params.items())) for t in trials}) == len(trials)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1 with a SQLite store; clients write artifacts to its folder directly."""
    with servers.mlflow_server(tmp_path_factory.mktemp("mlflow-server"), proxy_artifacts=False) as url:
        yield url


def test_tracking_server_blips_fail_only_their_trials_and_the_sweep_goes_on(
    workspace: WorkspaceConfig, demo_csv: Path, mlflow_server: str, monkeypatch: pytest.MonkeyPatch
):
    # The tracking server is down for all of trial 0's logging and trial 2's start (every retry of
    # them fails; the client's own retries are spent at once to keep the test short).
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    trial_zero_runs: set[bytes] = set()

    def fails(path: str, body: bytes) -> bool:
        if path.endswith("/runs/create"):
            return b"trial-002" in body
        return path.endswith("/runs/log-batch") and any(run in body for run in trial_zero_runs)

    def answered(path: str, body: bytes, reply: bytes) -> None:
        if path.endswith("/runs/create") and b"trial-000" in body:
            trial_zero_runs.add(json.loads(reply)["run"]["info"]["run_id"].encode())

    space = parse_space({"linear": {"C": {"type": "loguniform", "low": 0.01, "high": 10}}}, "t")
    with flaky_proxy(mlflow_server, fails, answered) as (url, proxy):
        tracked = workspace.model_copy(update={"mlflow": MlflowConnection(tracking_uri=url)})
        outcome = run_sweep(
            tracked,
            data=str(demo_csv),
            name="sweep-blips",
            space=space,
            max_trials=4,
            max_concurrent=1,
            study={"sampler": "random", "pruner": {"kind": "none"}},
        )
    assert outcome.error is None, outcome.error
    assert len(proxy.failed) == 2, proxy.failed
    rows = {row.trial: row for row in outcome.summary.sweep.leaderboard}
    assert {n: row.state for n, row in rows.items()} == {0: "failed", 1: "complete", 2: "failed", 3: "complete"}
    trials = study_trials(tracked, outcome.summary.sweep.study)
    assert [t.state for t in trials] == [TrialState.FAIL, TrialState.COMPLETE, TrialState.FAIL, TrialState.COMPLETE]
    assert all("MLflow" in trials[n].user_attrs["error"] for n in (0, 2)), [t.user_attrs for t in trials]
    client = MlflowConnection(tracking_uri=mlflow_server).resolve().client()
    logged = client.get_run(rows[0].mlflow_run_id)  # its run exists; it is closed as failed, with the reason
    assert logged.info.status == "FAILED" and "MLflow" in logged.data.tags["mlpipe.error"]
    parent = client.get_run(outcome.summary.parent_run_id)
    assert parent.data.metrics["trials_failed"] == 2  # counted against max_failed like any failed trial


def test_gpu_sweep_without_gpu_workers_fails_before_any_trial(workspace: WorkspaceConfig, demo_csv: Path):
    space = parse_space({"linear": {"C": {"type": "loguniform", "low": 0.01, "high": 10}}}, "t")
    outcome = run_sweep(workspace, data=str(demo_csv), name="gpu-missing", space=space, max_trials=2, device="cuda")
    assert isinstance(outcome.error, ConfigError)
    assert "device 'cuda': no Dask worker advertises the GPU resource" in str(outcome.error)
