"""`mlpipe deploy` and `mlpipe worker`: register unattended runs on a Prefect server, and run them."""

import os
import sys
from typing import Annotated, Any

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import out, run

deploy_app = typer.Typer(help="Register unattended runs (schedules, triggers) on a Prefect server.")


@deploy_app.callback(invoke_without_command=True)
def deploy(
    context: typer.Context,
    config: Annotated[
        opt.ConfigFile, opt.config_option("training / scoring / monitoring (and mlflow, cluster, …)")
    ] = None,
) -> None:
    """Register everything the config file describes: training on demand, scoring on cron, the closed loop."""
    if context.invoked_subcommand is not None:
        return
    if config is None:
        out.print(context.get_help())
        raise typer.Exit(2)

    def register() -> None:
        from mlpipe.blocks.config import load_config_file
        from mlpipe.deployments.project import deploy_project

        for name, deployment_id in deploy_project(load_config_file(config), str(config)).items():
            out.print(f"{name}: {deployment_id}")
        out.print("Serve them with: mlpipe worker")

    run(register)


@deploy_app.command("scoring")
def deploy_scoring(
    model: Annotated[str, typer.Option(help="model reference; NAME@champion follows the champion")],
    input: Annotated[str, typer.Option(help="input location; {window_start:%Y-%m-%d} is the night's date")],
    output: Annotated[str, typer.Option(help="output folder; each night becomes partition run=<window date>")],
    cron: Annotated[str, typer.Option(help="schedule")] = "0 2 * * *",
    timezone: Annotated[str, typer.Option(help="time zone of the schedule")] = "UTC",
    name: Annotated[str, typer.Option(help="deployment name")] = "nightly-scoring",
    pool: opt.Pool = "mlpipe",
    error_threshold: Annotated[int | None, typer.Option(help="errored rows allowed (-1: any)")] = None,
    passthrough: opt.Passthrough = None,
) -> None:
    """Schedule batch scoring (nightly by default) on the Prefect server in PREFECT_API_URL."""

    def register() -> None:
        from mlpipe.deployments.scoring import deploy_nightly_scoring

        settings: dict[str, Any] = {"error_threshold": error_threshold, "passthrough": opt.columns(passthrough)}
        deployment_id = deploy_nightly_scoring(
            model, input, output, cron, timezone, name, pool, **{k: v for k, v in settings.items() if v is not None}
        )
        out.print(f"Deployment batch-scoring/{name} ({deployment_id}): {cron} ({timezone}) on work pool '{pool}'.")
        out.print(f"Run its flows with: mlpipe worker --pool {pool}", soft_wrap=True)

    run(register)


def worker(
    pool: opt.Pool = "mlpipe",
    limit: Annotated[int | None, typer.Option(help="flow runs at once (default: no limit)")] = None,
    stop_seconds: Annotated[
        float | None, typer.Option(min=4, help="on SIGTERM/Ctrl-C: seconds until runs still going crash [default: 8]")
    ] = None,
) -> None:
    """Run the deployments: a Prefect process worker on the pool, for the server in PREFECT_API_URL.

    SIGTERM or Ctrl-C stops it within --stop-seconds: a flow run that ends by then ends normally,
    one still going is marked Crashed and its processes are killed, none is left behind.
    """

    def serve() -> None:
        from mlpipe.deployments.deploy import ensure_work_pool
        from mlpipe.deployments.worker import STOP_SECONDS, supervise, worker_command

        ensure_work_pool(pool)
        code = supervise(worker_command(pool, limit), stop_seconds or STOP_SECONDS)
        # Exit now: Prefect's exit hooks in this process may wait on a server that stopped with us.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)

    run(serve)
