"""`mlpipe up`, `mlpipe down`, `mlpipe status`: the local workspace as real servers on this machine."""

import json
from typing import TYPE_CHECKING, Annotated

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import out, run

if TYPE_CHECKING:
    from mlpipe.infra.local import ComponentState
    from mlpipe.workspace import Servers


def up(
    host: Annotated[
        str, typer.Option(help="where the Prefect and MLflow servers listen; beyond loopback they require credentials")
    ] = "127.0.0.1",
    prefect_port: Annotated[int, typer.Option(min=0, max=65535, help="Prefect API and UI (0: any free port)")] = 4200,
    mlflow_port: Annotated[int, typer.Option(min=0, max=65535, help="MLflow tracking server (0: any free)")] = 5000,
    dask_port: Annotated[int, typer.Option(min=0, max=65535, help="Dask scheduler, on 127.0.0.1 (0: any free)")] = 8786,
    dashboard_port: Annotated[int, typer.Option(min=0, max=65535, help="Dask dashboard (0: any free)")] = 8787,
    prefect_db: Annotated[
        str | None, typer.Option(help="Prefect database URL, e.g. postgresql+asyncpg://user@host/db [default: SQLite]")
    ] = None,
    mlflow_db: Annotated[
        str | None, typer.Option(help="MLflow backend store URL, e.g. postgresql://user@host/db [default: SQLite]")
    ] = None,
    workers: Annotated[int | None, typer.Option(min=1, help="Dask CPU worker processes [default: cores, ≤ 8]")] = None,
    gpus: Annotated[
        int | None, typer.Option(min=0, help="Dask GPU workers, one per GPU [default: the GPUs nvidia-smi lists]")
    ] = None,
    pool: opt.Pool = "mlpipe",
    auth: Annotated[
        bool, typer.Option(help="require credentials even on loopback (always on beyond it); see the README")
    ] = False,
    prefect_auth_secret: Annotated[
        str | None, typer.Option(help="Prefect Secret block with the Prefect auth string [default: the environment]")
    ] = None,
    mlflow_password_secret: Annotated[
        str | None, typer.Option(help="Prefect Secret block with the MLflow password [default: the environment]")
    ] = None,
    serve: Annotated[
        str | None,
        typer.Option(help="also start the scoring endpoint for this registered model (NAME means NAME@champion)"),
    ] = None,
    serve_port: Annotated[int, typer.Option(min=0, max=65535, help="scoring endpoint (0: any free port)")] = 8000,
    serve_workers: Annotated[int, typer.Option(min=1, help="scoring endpoint worker processes")] = 1,
    serve_api_keys_secret: Annotated[
        str | None, typer.Option(help="Prefect Secret block with the endpoint's API keys [default: MLPIPE_API_KEYS]")
    ] = None,
    serve_no_auth: Annotated[bool, typer.Option(help="serve without API keys (refused beyond loopback)")] = False,
) -> None:
    """Start the workspace's servers: Prefect, MLflow, a Dask scheduler with CPU (and GPU) workers, a worker,
    and with `--serve NAME` the scoring endpoint for a registered model.

    Commands run in this workspace (same MLPIPE_HOME) then use them by themselves. Running
    `up` again only reports what runs.
    """

    def start() -> None:
        from mlpipe.infra.components import Component, Options, cuda_worker_available, detect_gpus
        from mlpipe.infra.local import status, up
        from mlpipe.workspace import available_cores

        gpu_count = detect_gpus() if gpus is None else gpus
        options = Options(
            host=host,
            prefect_port=prefect_port,
            mlflow_port=mlflow_port,
            dask_port=dask_port,
            dashboard_port=dashboard_port,
            prefect_db=prefect_db,
            mlflow_db=mlflow_db,
            cpu_workers=workers or min(available_cores(), 8),
            gpus=gpu_count,
            cuda_worker=gpu_count > 0 and cuda_worker_available(),
            pool=pool,
            auth=auth,
            prefect_auth_secret=prefect_auth_secret,
            mlflow_password_secret=mlflow_password_secret,
            serve=serve,
            serve_port=serve_port,
            serve_workers=serve_workers,
            serve_no_auth=serve_no_auth,
            serve_api_keys_secret=serve_api_keys_secret,
        )

        def ready(component: Component, seconds: float) -> None:
            out.print(f"{component.title} ready ({seconds:.1f} s)", highlight=False)

        _, already = up(options, ready)
        if already:
            out.print("The workspace is already running:")
        servers, states = status()
        if servers is not None:
            _print_status(servers, states)
        out.print("Commands run with this MLPIPE_HOME use these servers; `mlpipe down` stops them.")

    run(start)


def down() -> None:
    """Stop every process `mlpipe up` started for this workspace (its databases and artifacts stay)."""

    def stop() -> None:
        from mlpipe.infra.local import down

        stopped = down()
        out.print(f"Stopped: {', '.join(stopped)}." if stopped else "Nothing was running.")

    run(stop)


def status(
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable: URLs and each component's state")] = False,
) -> None:
    """Each component of the workspace `mlpipe up` started: its state and where to open it."""

    def show() -> None:
        from mlpipe.infra.local import essential_running, status

        servers, states = status()
        if as_json:
            fields = (
                "prefect_api_url",
                "mlflow_tracking_uri",
                "dask_scheduler_address",
                "dask_dashboard_url",
                "scoring_url",
            )
            report = {name: getattr(servers, name) if servers else None for name in fields}
            report |= {
                "running": essential_running(states),
                "auth": bool(servers and servers.auth),
                "components": {s.name: {"state": s.state, "url": s.url or None, "pid": s.pid} for s in states},
            }
            out.print_json(json.dumps(report))
        elif servers is None:
            out.print("Not running (start it with `mlpipe up`).")
        else:
            _print_status(servers, states)

    run(show)


def _print_status(servers: "Servers", states: "list[ComponentState]") -> None:
    from rich.table import Table

    table = Table(show_header=True, box=None)
    for column in ("component", "state", "open", "pid"):
        table.add_column(column)
    colours = {"running": "green", "starting": "yellow", "stopped": "red"}
    for state in states:
        table.add_row(state.name, f"[{colours[state.state]}]{state.state}[/]", state.url, str(state.pid))
    out.print(table, soft_wrap=True)
    out.print(f"PREFECT_API_URL={servers.prefect_api_url}", highlight=False, soft_wrap=True)
    out.print(f"MLFLOW_TRACKING_URI={servers.mlflow_tracking_uri}", highlight=False, soft_wrap=True)
    out.print(f"DASK_SCHEDULER_ADDRESS={servers.dask_scheduler_address}", highlight=False, soft_wrap=True)
    if servers.scoring_url:
        out.print(f"Scoring endpoint: POST {servers.scoring_url}/predict", highlight=False, soft_wrap=True)
    if servers.auth:
        out.print("The servers require credentials: PREFECT_API_AUTH_STRING, MLFLOW_TRACKING_USERNAME/PASSWORD.")
