"""The Prefect UI as a team's control room: a deployment run from its form, the run's artifacts, the automations.

A real `prefect server` (its UI told where its API is), `mlpipe worker` on the `mlpipe` pool and,
where Debian's `chromium` is installed, a headless browser driven by playwright. Playwright rather
than selenium: it drives the system's chromium over its DevTools protocol with no driver binary
to match, waits for the UI's asynchronous rendering by itself and takes the screenshots.
"""

import json
import os
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, DeploymentFilter, DeploymentFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings

from mlpipe.demo_data import credit_default
from mlpipe.deployments.project import deploy_project
from mlpipe.flows.training import TrainingParams, training
from tests.servers import mlpipe_worker

pytestmark = pytest.mark.e2e

MODEL = "ui-demo"


@dataclass
class ControlRoom:
    """What the module set up on the workspace: the deployments and the run started as the UI starts one."""

    api: str
    folder: Path
    deployments: dict[str, UUID]
    form_deployment: UUID
    run_id: UUID
    data: Path


def form_values(params: TrainingParams) -> dict[str, Any]:
    """The parameters as the UI's *Custom run* form submits them, untouched (seen in its requests).

    Every field with its default, `config` as null, and a JSON-typed field (the model's
    hyperparameters) wrapped for the server to parse (`__prefect_kind: json`).
    """
    values = params.model_dump(mode="json")
    values["model"]["params"] = {"__prefect_kind": "json", "value": json.dumps(values["model"]["params"])}
    return {"params": values, "config": None}


@pytest.fixture(scope="module")
def control_room(prefect_server_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlRoom]:
    """Register training and the closed loop as `mlpipe deploy` does, then run training from the form's values.

    The workspace is the session's real `prefect server` (tests/conftest.py), its UI told where its API is.
    """
    folder = tmp_path_factory.mktemp("control-room")
    data = folder / "loans.csv"
    credit_default(rows=600, seed=7).to_csv(data, index=False)
    required = {"data": str(data), "target": "default", "name": MODEL}
    env = {**os.environ, "PREFECT_API_URL": prefect_server_api, "MLPIPE_HOME": str(folder / ".mlpipe")}
    # the worker starts first: its start-up overlaps the registration
    with mlpipe_worker(folder, env), temporary_settings({PREFECT_API_URL: prefect_server_api}):
        sections = {
            "training": required,
            "monitoring": {"model": MODEL, "target": "default", "current": str(data), "recent": str(data)},
        }
        deployments = deploy_project(sections, "control room")
        # the same training on a pool no worker serves: a run submitted from the browser's form waits there
        form = deploy_project({"training": {**required, "deployment": "form-check", "work_pool": "ui-form"}}, "form")
        values = form_values(TrainingParams(**required))
        with get_client(sync_client=True) as client:
            schema = client.read_deployment(deployments["training"]).parameter_openapi_schema
            checked = client.request("POST", "/ui/schemas/validate", json={"schema": schema, "values": values})
            assert checked.json()["valid"], checked.json()  # what the form checks before it submits
            run = client.create_flow_run_from_deployment(deployments["training"], parameters=values)
        final_state(run.id, 300)
    yield ControlRoom(prefect_server_api, folder, deployments, form["training"], run.id, data)


def final_state(run_id: UUID, seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while True:
        with get_client(sync_client=True) as client:
            state = client.read_flow_run(run_id).state
        if (state and state.is_final()) or time.monotonic() > deadline:
            return state.name if state else "none"
        time.sleep(1)


def test_a_training_run_from_the_deployments_form_completes_and_shows_its_artifacts(control_room: ControlRoom):
    with temporary_settings({PREFECT_API_URL: control_room.api}), get_client(sync_client=True) as client:
        run = client.read_flow_run(control_room.run_id)
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[control_room.run_id]))
        )
    log = (control_room.folder / "worker.log").read_text()
    assert run.state_name == "Completed", log[-4000:]
    assert run.parameters["params"]["model"]["params"] == {}  # the form's JSON field, parsed by the server
    by_key = {artifact.key: artifact for artifact in artifacts}
    assert {f"{MODEL}-metrics", f"{MODEL}-gate", f"{MODEL}-mlflow-run"} <= set(by_key)
    metrics = by_key[f"{MODEL}-metrics"]
    assert metrics.type == "table" and "roc_auc" in str(metrics.data)
    # each names the MLflow run and the model version it shows (a local store: the ids and how to open them)
    assert f"model `{MODEL}` v1" in (metrics.description or "") and "mlflow ui --backend-store-uri" in (
        metrics.description or ""
    )
    assert "# Gate: " in str(by_key[f"{MODEL}-gate"].data) and "MLflow run `" in str(by_key[f"{MODEL}-gate"].data)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless chromium from the system (no browser download); skips where there is none."""
    executable = shutil.which("chromium")
    if executable is None:
        pytest.skip("no chromium on PATH: the Prefect UI test needs one (Debian/Ubuntu: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield launched
        launched.close()


def test_the_ui_shows_the_run_its_artifacts_the_deployments_and_the_retraining_automation(
    control_room: ControlRoom, browser: Any, tmp_path: Path
):
    from playwright.sync_api import expect

    ui = control_room.api.removesuffix("/api")
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.set_default_timeout(30_000)

    page.goto(f"{ui}/runs/flow-run/{control_room.run_id}")
    page.locator("li.p-tab", has_text="Artifacts").click()
    tab = page.locator("#artifacts-content")
    for key in (f"{MODEL}-metrics", f"{MODEL}-gate", f"{MODEL}-mlflow-run"):
        expect(tab.get_by_text(key, exact=True)).to_be_visible()
    expect(page.get_by_text("Can't connect to Server API")).to_have_count(0)
    page.screenshot(path=tmp_path / "flow-run-artifacts.png")

    tab.get_by_text(f"{MODEL}-metrics", exact=True).click()
    page.wait_for_url("**/artifacts/artifact/**")
    expect(page.get_by_text("roc_auc", exact=True)).to_be_visible()
    expect(page.get_by_text("mlflow ui --backend-store-uri")).to_be_visible()  # the description, as markdown
    page.screenshot(path=tmp_path / "metrics-artifact.png")

    page.goto(f"{ui}/deployments")
    for name in (f"{MODEL}-training", f"{MODEL}-drift", f"{MODEL}-retraining"):
        expect(page.get_by_text(name, exact=True)).to_be_visible()
    page.screenshot(path=tmp_path / "deployments.png")

    page.goto(f"{ui}/automations")
    expect(page.get_by_text(f"retrain {MODEL} on drift or degraded performance")).to_be_visible()
    page.screenshot(path=tmp_path / "automations.png")

    page.goto(f"{ui}/deployments/deployment/{control_room.form_deployment}/run")
    expect(page.get_by_text("column to predict").first).to_be_visible()  # the parameters' model as a form
    page.screenshot(path=tmp_path / "run-form.png", full_page=True)
    page.get_by_role("button", name="Submit").click()
    runs = submitted_runs(control_room, 30)
    assert len(runs) == 1
    bound = training.validate_parameters(runs[0].parameters)  # what the worker's flow run would get
    assert bound["params"] == TrainingParams(data=str(control_room.data), target="default", name=MODEL)
    assert all(shot.stat().st_size > 10_000 for shot in tmp_path.glob("*.png"))


def submitted_runs(control_room: ControlRoom, seconds: float) -> list[Any]:
    deadline = time.monotonic() + seconds
    while True:
        with temporary_settings({PREFECT_API_URL: control_room.api}), get_client(sync_client=True) as client:
            runs = client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[control_room.form_deployment]))
            )
        if runs or time.monotonic() > deadline:
            return runs
        time.sleep(0.5)
