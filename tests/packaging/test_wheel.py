"""The built wheel installs one import name, `mlpipe`, holds every package, and runs deployments from a worker.

The wheel goes into a fresh virtual environment of its own. Its dependencies are borrowed from
the test environment through a `.pth` line (a plain path: the test environment's own `.pth`
files, the editable install of this checkout among them, are not run), so `mlpipe` can only
come from the wheel.
"""

import json
import os
import subprocess
import sys
import sysconfig
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect import get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterDeploymentId

from mlpipe import __version__
from mlpipe.demo_data import credit_default
from tests import source_tree

pytestmark = pytest.mark.e2e


@dataclass(frozen=True)
class Installed:
    wheel: Path
    python: Path
    site_packages: Path
    scripts: Path


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    """`pip wheel` of this checkout (in an isolated build environment), installed into a fresh venv."""
    root = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--wheel-dir", str(root / "dist"), "."],
        cwd=source_tree.ROOT,
        check=True,
        timeout=600,
    )
    (wheel,) = (root / "dist").glob("mlpipe-*.whl")
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site_packages = Path(
        subprocess.run(
            [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    )
    (site_packages / "borrowed-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        timeout=300,
    )
    return Installed(wheel=wheel, python=python, site_packages=site_packages, scripts=venv / "bin")


def run_python(installed: Installed, code: str, cwd: Path) -> str:
    result = subprocess.run(
        [str(installed.python), "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300, env=_clean_env()
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _clean_env() -> dict[str, str]:
    """This environment without the variables that point a process at this checkout."""
    return {key: value for key, value in os.environ.items() if key not in ("PYTHONPATH", "VIRTUAL_ENV")}


def test_the_wheel_holds_every_package_and_only_the_mlpipe_name(installed: Installed, tmp_path: Path):
    packages = sorted(
        ".".join([name, *init.parent.relative_to(folder).parts])
        for name, folder in source_tree.package_dirs().items()
        for init in folder.rglob("__init__.py")
        if "__pycache__" not in init.parts and not any(p.startswith(".") for p in init.parts)
    )
    files = zipfile.ZipFile(installed.wheel).namelist()
    assert {name.split("/")[0] for name in files} == {"mlpipe", f"mlpipe-{__version__}.dist-info"}
    assert [p for p in packages if p.replace(".", "/") + "/__init__.py" not in files] == []
    code = f"import importlib, json; print(json.dumps({{m: importlib.import_module(m).__file__ for m in {packages}}}))"
    imported = json.loads(run_python(installed, code, tmp_path))
    outside = {module: path for module, path in imported.items() if not path.startswith(str(installed.site_packages))}
    assert outside == {}  # every package imports from the wheel, none from the checkout


def test_a_projects_own_tasks_flows_and_blocks_are_never_ours(installed: Installed, tmp_path: Path):
    """A project with an invoke-style `tasks.py` and folders named like ours keeps its own modules."""
    (tmp_path / "tasks.py").write_text("def build():\n    return 'the project'\n")
    for folder in ("flows", "blocks", "deployments"):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "__init__.py").write_text(f'OWNER = "the project\'s {folder}"\n')
    found = json.loads(
        run_python(
            installed,
            "import json, mlpipe.flows.training, mlpipe.tasks.data.ingest, tasks, flows, blocks, deployments\n"
            "print(json.dumps({m.__name__: m.__file__ for m in (tasks, flows, blocks, deployments)}))",
            tmp_path,
        )
    )
    assert found == {
        "tasks": str(tmp_path / "tasks.py"),
        "flows": str(tmp_path / "flows" / "__init__.py"),
        "blocks": str(tmp_path / "blocks" / "__init__.py"),
        "deployments": str(tmp_path / "deployments" / "__init__.py"),
    }


REGISTER = """
import sys
from mlpipe.deployments.deploy import deploy_flow
from mlpipe.flows.training import TrainingParams, training

params = TrainingParams(data=sys.argv[1], target="default", name="from-wheel", exclude=["application_id"],
                        model={"params": {"n_estimators": 20}})
print(deploy_flow(training, "from-wheel", params.model_dump(mode="json"), "wheel-pool", ["wheel"],
                  job_variables={"working_dir": sys.argv[2]}))
"""


def test_a_deployment_registered_from_the_installed_package_runs_on_a_worker(
    installed: Installed, tmp_path: Path, prefect_api: str
):
    project = tmp_path / "project"  # the user's folder, with a tasks.py of its own, where runs start
    project.mkdir()
    (project / "tasks.py").write_text("raise RuntimeError('a project module must never be imported by mlpipe')\n")
    data = tmp_path / "loans.parquet"
    credit_default(rows=800, seed=5).to_parquet(data, index=False)
    env = {
        **_clean_env(),
        "PREFECT_API_URL": prefect_api,
        "PREFECT_WORKER_QUERY_SECONDS": "1",
        "MLPIPE_HOME": str(tmp_path / "workspace"),
    }
    registered = subprocess.run(
        [str(installed.python), "-c", REGISTER, str(data), str(project)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert registered.returncode == 0, registered.stderr[-3000:]
    deployment_id = registered.stdout.strip().splitlines()[-1]
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
        assert deployment.entrypoint == "mlpipe.flows.training.training"
        assert deployment.pull_steps in (None, [])  # nothing to fetch: the worker's installed mlpipe runs it
        run = client.create_flow_run_from_deployment(deployment.id)
    log = (tmp_path / "worker.log").open("w")
    worker = subprocess.Popen(
        [str(installed.scripts / "mlpipe"), "worker", "--pool", "wheel-pool"],
        cwd=project,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        state = _final_state(run.id, deployment.id, timeout=300)
    finally:
        worker.terminate()
        worker.wait(timeout=60)
    assert state == "Completed", (tmp_path / "worker.log").read_text()[-4000:]
    tracking = f"sqlite:///{tmp_path / 'workspace' / 'mlflow.db'}"
    version = run_python(
        installed,
        "import mlflow\n"
        f"client = mlflow.MlflowClient('{tracking}')\n"
        "v = client.get_model_version_by_alias('from-wheel', 'champion')\n"
        "print(v.tags['mlpipe.code_version'])",
        tmp_path,
    )
    assert version.strip() == __version__  # the wheel's code ran: a checkout would record its git commit


def _final_state(run_id: object, deployment_id: object, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                flow_run_filter=FlowRunFilter(deployment_id=FlowRunFilterDeploymentId(any_=[deployment_id]))
            )
        state = next((r.state for r in runs if r.id == run_id and r.state is not None), None)
        if state is not None and state.is_final():
            return str(state.name)
        time.sleep(1)
    return "still running"
