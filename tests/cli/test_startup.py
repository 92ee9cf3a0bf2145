"""Commands start at once: help needs no pipeline library, and each command loads only what it uses."""

import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

pytestmark = pytest.mark.unit
MLPIPE = str(Path(sys.executable).parent / "mlpipe")
PIPELINE_LIBRARIES = {
    "prefect",
    "mlflow",
    "pandas",
    "sklearn",
    "great_expectations",
    "dask",
    "distributed",
    "xgboost",
    "diffprivlib",
}


def run_profiled(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run `mlpipe ARGS` with Python's import profiler; returns the result and the top-level packages imported."""
    environment = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1", "MLPIPE_HOME": str(cwd / ".mlpipe"), **(env or {})}
    result = subprocess.run([MLPIPE, *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=300)
    imported = {m.group(1).split(".")[0] for m in re.finditer(r"^import time:.*\|\s+(\S+)$", result.stderr, re.M)}
    return result, imported


@pytest.mark.parametrize(
    "args", [["--help"], ["train", "--help"], ["sweep", "--help"], ["deploy", "--help"], ["explain", "--help"]]
)
def test_help_answers_in_under_a_second_without_pipeline_libraries(args: list[str], tmp_path: Path):
    result, imported = run_profiled(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Usage: mlpipe" in result.stdout
    assert not imported & PIPELINE_LIBRARIES
    seconds = []
    for _ in range(3):
        started = time.perf_counter()
        subprocess.run([MLPIPE, *args], cwd=tmp_path, capture_output=True, check=True, timeout=60)
        seconds.append(time.perf_counter() - started)
    assert statistics.median(seconds) < 1.0, seconds


def test_rollback_loads_no_scikit_learn_or_great_expectations(tmp_path: Path):
    result, imported = run_profiled("rollback", "no-such-model", cwd=tmp_path)
    assert result.returncode == 1
    assert "error: model 'no-such-model' has no champion to roll back" in result.stderr
    assert "mlflow" in imported  # it did reach the registry
    assert not imported & {"sklearn", "great_expectations", "xgboost", "distributed", "optuna"}


def test_worker_loads_no_scikit_learn_or_great_expectations(tmp_path: Path):
    nothing_listens = {"PREFECT_API_URL": "http://127.0.0.1:9/api", "PREFECT_CLIENT_MAX_RETRIES": "0"}
    result, imported = run_profiled("worker", "--pool", "startup-test", cwd=tmp_path, env=nothing_listens)
    assert result.returncode == 1  # no server to create the pool on: it stops before starting the worker
    assert "error:" in result.stderr
    assert "prefect" in imported
    assert not imported & {"sklearn", "great_expectations", "xgboost", "mlflow", "optuna"}


@pytest.mark.parametrize(
    ("flows", "never"),
    [
        (
            "training, scoring, drift",
            {"great_expectations", "matplotlib", "sklearn", "mlflow", "xgboost", "scipy", "diffprivlib"},
        ),
        ("sweep", {"great_expectations", "matplotlib", "diffprivlib"}),  # optuna samples and checks its space
    ],
)
def test_the_pipelines_load_the_heavy_libraries_only_in_the_steps_that_use_them(
    flows: str, never: set[str], tmp_path: Path
):
    """A cached run never pays for great-expectations or matplotlib: the steps import them when they run.

    With a workspace up, the steps run on its Dask workers: a command's process that imports no
    scikit-learn, MLflow or xgboost starts its flow seconds earlier.
    """
    modules = ", ".join(f"mlpipe.flows.{name}" for name in flows.split(", "))
    probe = f"import sys, {modules}; print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}})))"
    environment = {**os.environ, "MLPIPE_HOME": str(tmp_path / ".mlpipe")}
    command = [sys.executable, "-c", probe]
    result = subprocess.run(command, cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    imported = set(result.stdout.split())
    assert {"prefect", "pandas"} <= imported
    assert not imported & never


def test_a_temporary_api_that_never_answers_leaves_no_server_behind(tmp_path: Path):
    """The command starts Prefect's temporary API early; when it fails, no server process outlives the command."""
    home = tmp_path / "prefect-home"
    never_in_time = {"PREFECT_HOME": str(home), "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "0"}
    result, _ = run_profiled(
        "train", "--data", str(tmp_path / "d.csv"), "--target", "y", "--name", "m", cwd=tmp_path, env=never_in_time
    )
    assert result.returncode == 1
    assert "error: the temporary Prefect API did not answer within 0 s" in result.stderr
    left = _temporary_apis(home)
    assert not left, [p.info["cmdline"] for p in left]


def test_a_killed_command_leaves_no_temporary_api_behind(tmp_path: Path):
    """The server is started before Prefect is imported, by the command itself: it dies with the command."""
    home = tmp_path / "prefect-home"
    data = tmp_path / "d.csv"
    data.write_text("x,y\n" + "".join(f"{i},{i % 2}\n" for i in range(50)))
    environment = {**os.environ, "PREFECT_HOME": str(home), "MLPIPE_HOME": str(tmp_path / ".mlpipe")}
    command = [MLPIPE, "train", "--data", str(data), "--target", "y", "--name", "m"]
    process = subprocess.Popen(command, cwd=tmp_path, env=environment, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (started := _temporary_apis(home)) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert started, "the command started no temporary Prefect API"
    finally:
        process.kill()
        process.wait()
    _, alive = psutil.wait_procs(started, timeout=15)
    assert not alive, [p.info["cmdline"] for p in alive]


def _temporary_apis(home: Path) -> list[psutil.Process]:
    """Temporary Prefect API servers started with this PREFECT_HOME."""
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        command, environment = process.info["cmdline"] or [], process.info["environ"] or {}
        if "prefect.server.api.server:create_app" in command and environment.get("PREFECT_HOME") == str(home):
            found.append(process)
    return found


def test_a_command_leaves_nothing_for_the_interpreters_last_collection(tmp_path: Path):
    """Python's final garbage collection walks every object the libraries made (1.8 s after a training):
    a command exempts them all once its own exit handlers have run."""
    probe = (
        "import atexit, gc, sys; atexit.register(lambda: print('frozen', gc.get_freeze_count()));"
        "sys.argv = ['mlpipe', 'status']; from mlpipe.cli import app; app()"
    )
    environment = {**os.environ, "MLPIPE_HOME": str(tmp_path / ".mlpipe")}
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, env=environment, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    frozen = int(result.stdout.split("frozen")[-1])
    assert frozen > 10_000, result.stdout  # every object the command made, not only those made after it ended
