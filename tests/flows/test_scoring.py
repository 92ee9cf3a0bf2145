"""Batch scoring: every row exactly once, like the registered model would score it, whatever breaks."""

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest
from distributed import Client, LocalCluster
from prefect.client.orchestration import get_client
from prefect.flow_engine import run_flow
from prefect.settings import PREFECT_API_URL
from prefect.states import Scheduled

from mlpipe.blocks import DaskCluster, WorkspaceConfig
from mlpipe.demo_data import credit_default
from mlpipe.deployments.scoring import deploy_nightly_scoring
from mlpipe.errors import ConfigError, DataError, MlpipeError
from mlpipe.flows.common import resolve_window
from mlpipe.flows.scoring import ScoringParams, ScoringSummary, batch_scoring
from mlpipe.tasks.registry.model_ref import resolve_model
from tests.pipeline import MLPIPE, cli_environment, run_cli, run_training, wait_for
from tests.tasks.scoring.small_disk import SmallDisk

pytestmark = pytest.mark.flow

MODEL = "scoring-demo"
EXCLUDE = ["application_id", "applied_at"]


@pytest.fixture(scope="module")
def champion(workspace: WorkspaceConfig, demo_csv: Path) -> str:
    outcome = run_training(workspace, data=str(demo_csv), target="default", name=MODEL, exclude=EXCLUDE)
    assert outcome.error is None, outcome.error
    return outcome.summary.version


def write_inputs(folder: Path, files: int, rows: int, row_group: int, seed: int = 10) -> pd.DataFrame:
    """`files` Parquet files of fresh applications (unique ids across files), in row groups of `row_group`."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = []
    for index in range(files):
        frame = credit_default(rows=rows, seed=seed + index)
        frame["application_id"] = [f"app-{index}-{row}" for row in range(rows)]
        frame.to_parquet(folder / f"part-{index}.parquet", index=False, row_group_size=row_group)
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def score(workspace: WorkspaceConfig, **params: object) -> ScoringSummary:
    params.setdefault("model", f"{MODEL}@champion")
    return batch_scoring(ScoringParams(**params), workspace)


def test_every_row_is_scored_once_like_pyfunc_and_a_rerun_adds_nothing(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    inputs = write_inputs(tmp_path / "in", files=3, rows=2_000, row_group=500)
    output = tmp_path / "out"
    summary = score(
        workspace,
        input=str(tmp_path / "in" / "*.parquet"),
        output=str(output),
        mini_batch_size=1_000,
        passthrough=["application_id"],
    )
    manifest = summary.manifest
    assert (manifest.batches, manifest.rows_in, manifest.rows_out, manifest.rows_errored) == (6, 6_000, 6_000, 0)
    assert manifest.model.version == champion and manifest.model.uri == f"models:/{MODEL}/{champion}"
    assert [Path(f.url).name for f in manifest.inputs] == ["part-0.parquet", "part-1.parquet", "part-2.parquet"]
    assert all(f.ukey for f in manifest.inputs)
    assert "applied_at" in manifest.extra_columns  # reported, not an error
    assert not (output / "_staging").exists() or not any((output / "_staging").iterdir())

    scored = pd.read_parquet(output)
    assert len(scored) == len(inputs) and scored["application_id"].is_unique
    assert set(scored["model_version"]) == {champion} and set(scored["model_name"]) == {MODEL}
    with workspace.resolve().mlflow.session():
        expected = mlflow.pyfunc.load_model(f"models:/{MODEL}/{champion}").predict(inputs)
    expected["application_id"] = inputs["application_id"]
    joined = scored.merge(expected, on="application_id", suffixes=("", "_pyfunc"))
    assert len(joined) == len(inputs)
    np.testing.assert_allclose(joined["probability_1"], joined["probability_1_pyfunc"], rtol=1e-6)
    assert (joined["prediction"] == joined["prediction_pyfunc"]).all()
    on_disk = json.loads((output / "_manifests" / f"run={manifest.partition}.json").read_text())
    assert on_disk["rows_out"] == 6_000 and on_disk["run_key"] == manifest.run_key

    again = score(
        workspace,
        input=str(tmp_path / "in" / "*.parquet"),
        output=str(output),
        mini_batch_size=1_000,
        passthrough=["application_id"],
    )
    assert again.already_published and again.manifest.run_key == manifest.run_key
    assert len(pd.read_parquet(output)) == len(inputs)


def test_schema_mismatch_fails_before_any_output_naming_column_and_file(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    inputs = write_inputs(tmp_path / "in", files=2, rows=300, row_group=300)
    inputs.head(300).drop(columns=["income"]).to_parquet(tmp_path / "in" / "part-1.parquet", index=False)
    with pytest.raises(DataError, match=r"part-1\.parquet: column 'income' is missing"):
        score(workspace, input=str(tmp_path / "in"), output=str(tmp_path / "out"))
    typed = inputs.head(300).assign(income=lambda f: f["income"].astype(str) + "k")
    typed.to_parquet(tmp_path / "in" / "part-1.parquet", index=False)
    wrong_type = r"part-1\.parquet: column 'income' has type (large_)?string; the model expects double"
    with pytest.raises(DataError, match=wrong_type):
        score(workspace, input=str(tmp_path / "in"), output=str(tmp_path / "out"))
    assert not (tmp_path / "out").exists()


def test_error_threshold_both_ways_with_bad_rows_and_a_corrupt_file(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    folder = tmp_path / "in"
    folder.mkdir()
    good = credit_default(rows=400, seed=20)
    good.to_csv(folder / "a-good.csv", index=False)
    bad = credit_default(rows=400, seed=21)
    bad["income"] = bad["income"].astype(object)
    bad.loc[[5, 17, 300], "income"] = "n/a?"
    bad.to_csv(folder / "b-bad-cells.csv", index=False)
    (folder / "c-corrupt.parquet").write_bytes(b"PAR1 this is not really parquet")

    with pytest.raises(MlpipeError, match=r"4 errors .* exceed error_threshold 3.*c-corrupt\.parquet"):
        score(workspace, input=str(folder), output=str(tmp_path / "strict"), error_threshold=3)
    assert not list((tmp_path / "strict").glob("run=*")) and not (tmp_path / "strict" / "_manifests").exists()

    summary = score(workspace, input=str(folder), output=str(tmp_path / "lenient"), error_threshold=4)
    manifest = summary.manifest
    assert (manifest.rows_in, manifest.rows_out, manifest.rows_errored, manifest.files_errored) == (800, 797, 3, 1)
    assert len(pd.read_parquet(tmp_path / "lenient")) == 797
    errors = pd.read_parquet(manifest.errors)
    bad_rows = errors[errors["source_file"].str.endswith("b-bad-cells.csv")]
    assert sorted(bad_rows["source_row"]) == [5, 17, 300]
    assert bad_rows["reason"].str.contains("column 'income'").all()
    corrupt = errors[errors["source_file"].str.endswith("c-corrupt.parquet")]
    assert len(corrupt) == 1 and "cannot read the file" in corrupt["reason"].iloc[0]


def test_a_worker_killed_mid_run_loses_and_duplicates_no_row(workspace: WorkspaceConfig, champion: str, tmp_path: Path):
    inputs = write_inputs(tmp_path / "in", files=8, rows=6_000, row_group=1_000)
    output = tmp_path / "out"
    env = {**os.environ, "PREFECT_API_URL": PREFECT_API_URL.value()}
    dask = str(Path(sys.executable).parent / "dask")
    with LocalCluster(n_workers=0, dashboard_address=":0", processes=True) as cluster:
        workers = [
            subprocess.Popen(
                [dask, "worker", cluster.scheduler_address, "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            for _ in range(2)
        ]
        try:
            with Client(cluster.scheduler_address) as client:
                client.wait_for_workers(2, timeout=120)
            remote = workspace.model_copy(update={"cluster": DaskCluster(address=cluster.scheduler_address)})

            def kill_one_worker_after_three_batches() -> None:
                wait_for(lambda: len(list(output.glob("_staging/*/done/part-*.json"))) >= 3, 240, "three batches")
                workers[0].kill()

            killer = threading.Thread(target=kill_one_worker_after_three_batches, daemon=True)
            killer.start()
            summary = score(
                remote,
                input=str(tmp_path / "in"),
                output=str(output),
                mini_batch_size=1_000,
                passthrough=["application_id"],
                max_concurrency=2,
            )
            killer.join(timeout=5)
            assert workers[0].poll() is not None, "the worker was not killed mid-run"
        finally:
            for worker in workers:
                worker.kill()
                worker.wait(timeout=60)
    assert summary.manifest.rows_out == len(inputs) == 48_000
    scored = pd.read_parquet(output)
    assert len(scored) == len(inputs) and scored["application_id"].is_unique
    assert set(scored["application_id"]) == set(inputs["application_id"])


def test_a_killed_scoring_process_resumes_skipping_finished_batches(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    inputs = write_inputs(tmp_path / "in", files=6, rows=8_000, row_group=1_000)
    output = tmp_path / "out"
    args = [
        "score",
        "--model",
        f"{MODEL}@champion",
        "--input",
        str(tmp_path / "in"),
        "--output",
        str(output),
        "--mini-batch-size",
        "1000",
        "--max-concurrency",
        "1",
        "--passthrough",
        "application_id",
    ]
    env = {**cli_environment(tmp_path), "MLFLOW_TRACKING_URI": workspace.resolve().mlflow.tracking_uri or ""}
    log = tmp_path / "first.log"
    scoring = subprocess.Popen(
        [MLPIPE, *args], cwd=tmp_path, env=env, start_new_session=True, stdout=subprocess.DEVNULL, stderr=log.open("w")
    )

    def finished_batches() -> int:
        assert scoring.poll() is None, log.read_text()[-3000:]
        return len(list(output.glob("_staging/*/done/part-*.json")))

    try:
        wait_for(lambda: finished_batches() >= 3, 240, "three finished batches")
    finally:
        os.killpg(scoring.pid, signal.SIGKILL)
        scoring.wait()
    assert not list(output.glob("run=*"))  # nothing published by the killed run
    done_before = len(list(output.glob("_staging/*/done/part-*.json")))

    result = subprocess.run([MLPIPE, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{done_before} of 48 batches resumed" in result.stdout
    scored = pd.read_parquet(output)
    assert len(scored) == len(inputs) and scored["application_id"].is_unique


def test_score_cli_reports_a_missing_model_clearly(tmp_path: Path):
    result = run_cli(
        "score",
        "--model",
        "no-such-model@champion",
        "--input",
        str(tmp_path),
        "--output",
        str(tmp_path / "o"),
        cwd=tmp_path,
    )
    assert result.returncode == 1
    assert "model 'no-such-model@champion'" in result.stderr


def test_the_input_window_ends_at_the_scheduled_time():
    scheduled = dt.datetime(2026, 3, 5, 2, 0, tzinfo=dt.UTC)
    source, start = resolve_window("s3://bucket/{window_start:%Y-%m-%d}/*.parquet", scheduled, days=1)
    assert (source, start) == ("s3://bucket/2026-03-04/*.parquet", scheduled - dt.timedelta(days=1))
    assert resolve_window("/data/all.parquet", scheduled, days=1) == ("/data/all.parquet", None)


def test_nightly_deployment_is_scheduled_and_a_backfill_scores_its_own_night(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    write_inputs(tmp_path / "in" / "2026-03-04", files=1, rows=500, row_group=500)
    write_inputs(tmp_path / "in" / "2026-03-05", files=2, rows=500, row_group=500)
    template = str(tmp_path / "in" / "{window_start:%Y-%m-%d}")
    deployment_id = deploy_nightly_scoring(
        f"{MODEL}@champion", template, str(tmp_path / "out"), cron="30 1 * * *", timezone="Europe/Amsterdam"
    )
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment(deployment_id)
        assert client.read_work_pool("mlpipe").type == "process"
        # A backfill: the run scheduled for the night of 5 March, executed now.
        night = dt.datetime(2026, 3, 5, 1, 30, tzinfo=dt.UTC)
        flow_run = client.create_flow_run_from_deployment(deployment_id, state=Scheduled(scheduled_time=night))
    schedule = deployment.schedules[0].schedule
    assert (schedule.cron, schedule.timezone) == ("30 1 * * *", "Europe/Amsterdam")
    assert deployment.work_pool_name == "mlpipe"
    assert deployment.entrypoint == "mlpipe.flows.scoring.batch_scoring"
    assert deployment.parameters["params"]["input"] == template

    summary = run_flow(batch_scoring, flow_run=flow_run, parameters=flow_run.parameters)
    assert summary.manifest.partition == "2026-03-04"  # the window before the scheduled time
    assert summary.manifest.rows_in == 500 and len(summary.manifest.inputs) == 1
    assert (tmp_path / "out" / "run=2026-03-04").is_dir()


def test_append_refuses_a_taken_partition_and_overwrite_replaces_the_whole_output(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    write_inputs(tmp_path / "night-1", files=1, rows=300, row_group=300, seed=30)
    write_inputs(tmp_path / "night-2", files=1, rows=200, row_group=200, seed=31)
    output = str(tmp_path / "out")
    score(workspace, input=str(tmp_path / "night-1"), output=output, partition="n1")
    with pytest.raises(ConfigError, match=r"run=n1 already holds another run.*--mode overwrite"):
        score(workspace, input=str(tmp_path / "night-2"), output=output, partition="n1")
    score(workspace, input=str(tmp_path / "night-2"), output=output, partition="n2")
    assert len(pd.read_parquet(output)) == 500  # two partitions side by side

    summary = score(workspace, input=str(tmp_path / "night-2"), output=output, partition="n3", mode="overwrite")
    assert summary.manifest.rows_out == 200
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith("_")) == ["run=n3"]
    assert [p.name for p in (tmp_path / "out" / "_manifests").iterdir()] == ["run=n3.json"]
    assert len(pd.read_parquet(output)) == 200


def test_models_are_pinned_by_alias_version_or_uri_and_runs_publish_artifacts(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    tracking = workspace.resolve().mlflow
    by_alias = resolve_model(f"{MODEL}@champion", tracking)
    by_version = resolve_model(f"{MODEL}/{champion}", tracking)
    by_uri = resolve_model(f"models:/{MODEL}/{champion}", tracking)
    assert by_alias.uri == by_version.uri == by_uri.uri == f"models:/{MODEL}/{champion}"
    assert "income" in {column.name for column in by_alias.inputs}
    for wrong, message in ((f"{MODEL}@nobody", "nobody"), (f"{MODEL}/999", "999"), ("no-slash", "NAME@ALIAS")):
        with pytest.raises(ConfigError, match=message):
            resolve_model(wrong, tracking)

    write_inputs(tmp_path / "in", files=1, rows=200, row_group=200)
    score(workspace, input=str(tmp_path / "in"), output=str(tmp_path / "out"), partition="artifacts-demo")
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=ArtifactFilter(key=ArtifactFilterKey(like_="artifacts-demo")))
    by_key = {artifact.key: artifact for artifact in found}
    assert by_key["scoring-artifacts-demo"].type == "progress" and by_key["scoring-artifacts-demo"].data == 100.0
    summary = str(by_key["scoring-artifacts-demo-summary"].data)
    assert "rows per second" in summary and str(tmp_path / "out" / "run=artifacts-demo") in summary


def test_a_full_disk_leaves_its_batch_pending_and_the_rerun_scores_every_row_once(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    inputs = write_inputs(tmp_path / "in", files=2, rows=2_000, row_group=500, seed=60)
    output = SmallDisk.mount(tmp_path / "out", capacity=FULL_AFTER_ABOUT_THREE_PARTS)
    params = {
        "input": str(tmp_path / "in"),
        "output": output,
        "mini_batch_size": 500,
        "passthrough": ["application_id"],
        "max_concurrency": 1,
        "error_threshold": -1,  # even a run that tolerates bad rows must not take a full disk for one
    }
    with pytest.raises(MlpipeError, match=r"batch \d+ .*No space left on device.*run the same command again"):
        score(workspace, **params)
    staged = next((tmp_path / "out" / "_staging").iterdir())
    done = sorted(staged.glob("done/part-*.json"))
    assert 1 <= len(done) < 8, "the disk should fill mid-run"
    assert [p.name for p in sorted(staged.glob("data/part-*"))] == [p.name.replace(".json", ".parquet") for p in done]
    assert not list(staged.glob("errors/*"))  # a full disk is not a data error
    assert not list((tmp_path / "out").glob("run=*")) and not (tmp_path / "out" / "_manifests").exists()

    SmallDisk.mount(tmp_path / "out", capacity=1 << 40)  # space was freed
    manifest = score(workspace, **params).manifest
    assert (manifest.batches_resumed, manifest.rows_out, manifest.rows_errored) == (len(done), 4_000, 0)
    scored = pd.read_parquet(tmp_path / "out")
    assert len(scored) == len(inputs) and scored["application_id"].is_unique
    assert set(scored["application_id"]) == set(inputs["application_id"])


FULL_AFTER_ABOUT_THREE_PARTS = 60_000
"""Bytes: a 500-row part with its done record takes about 15 kB."""


def test_two_runs_into_one_partition_cannot_both_publish(workspace: WorkspaceConfig, champion: str, tmp_path: Path):
    first_rows = write_inputs(tmp_path / "night-1", files=1, rows=600, row_group=300, seed=40)
    write_inputs(tmp_path / "night-2", files=1, rows=200, row_group=200, seed=41)
    output = SmallDisk.mount(tmp_path / "out", capacity=1 << 40)
    SmallDisk.gate.clear()  # the first run's batches wait on a slow disk until the second run has tried
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(
            score,
            workspace,
            input=str(tmp_path / "night-1"),
            output=output,
            partition="p",
            passthrough=["application_id"],
        )
        try:
            wait_for(lambda: any((tmp_path / "out").glob("_staging/*/data/.*.tmp")), 120, "the first run mid-batch")
            with pytest.raises(MlpipeError, match=r"_leases/run=p\.json is held by flow run .*run key"):
                score(workspace, input=str(tmp_path / "night-2"), output=output, partition="p")
        finally:
            SmallDisk.gate.set()
        assert first.result(timeout=120).manifest.rows_out == 600
    scored = pd.read_parquet(tmp_path / "out")
    assert sorted(scored["application_id"]) == sorted(first_rows["application_id"])
    assert not list((tmp_path / "out" / "_leases").iterdir())  # released when the run ended


def test_overwrite_refuses_an_output_folder_holding_anything_but_its_own_partitions(
    workspace: WorkspaceConfig, champion: str, tmp_path: Path
):
    write_inputs(tmp_path / "night", files=1, rows=200, row_group=200, seed=50)
    output = tmp_path / "out"
    score(workspace, input=str(tmp_path / "night"), output=str(output), partition="n1")
    (output / "notes.txt").write_text("not scoring's")
    (output / "run=by-hand").mkdir()
    (output / "run=by-hand" / "part-0.parquet").write_bytes(b"a partition no scoring run published")

    found = r"overwrite replaces only scoring partitions, but .*out also holds \['notes\.txt', 'run=by-hand'\]"
    with pytest.raises(ConfigError, match=found):
        score(workspace, input=str(tmp_path / "night"), output=str(output), partition="n2", mode="overwrite")
    assert (output / "notes.txt").read_text() == "not scoring's"
    assert (output / "run=by-hand" / "part-0.parquet").exists() and (output / "run=n1").is_dir()
    assert not (output / "run=n2").exists() and not list(output.glob("_staging/*"))
