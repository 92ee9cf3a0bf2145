"""`mlpipe serve`: the champion behind HTTP with API keys, validation from its contract, hot swap and a shadow."""

from typing import Annotated

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import run


def serve(
    model: Annotated[str, typer.Option(help="NAME@ALIAS (followed as it moves) or NAME/VERSION")],
    host: Annotated[str, typer.Option(help="address to listen on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="port to listen on")] = 8000,
    workers: Annotated[int, typer.Option(help="uvicorn worker processes")] = 1,
    api_keys_secret: Annotated[
        str | None, typer.Option(help="Prefect Secret block with the API keys (default: $MLPIPE_API_KEYS)")
    ] = None,
    no_auth: Annotated[bool, typer.Option("--no-auth", help="accept calls without a key (loopback only)")] = False,
    shadow_share: Annotated[
        float, typer.Option(help="share of requests the `challenger` also scores, off the request path (0..1)")
    ] = 0.0,
    poll_seconds: Annotated[float, typer.Option(help="how often the registry's aliases are checked")] = 10.0,
    max_body_bytes: Annotated[int, typer.Option(help="larger request bodies get 413")] = 8_000_000,
    drain_seconds: Annotated[int, typer.Option(help="on SIGTERM, how long requests in flight may finish")] = 30,
    capture_rate: Annotated[
        float, typer.Option(help="share of answered rows captured to the datastore for drift checks (0: none)")
    ] = 0.1,
    capture_to: Annotated[
        str | None, typer.Option(help="where captures go (default: the datastore's captures/<model>)")
    ] = None,
    config: Annotated[opt.ConfigFile, opt.config_option("mlflow")] = None,
) -> None:
    """Serve a registered model over HTTP: POST /predict, GET /health, /ready, /metadata, /metrics."""

    def start() -> None:
        from mlpipe.errors import validated
        from mlpipe.infra.serving.server import serve as run_server
        from mlpipe.infra.serving.settings import ServeSettings

        options = {
            "model": model,
            "host": host,
            "port": port,
            "workers": workers,
            "config_file": str(config) if config else None,
            "api_keys_secret": api_keys_secret,
            "no_auth": no_auth,
            "shadow_share": shadow_share,
            "poll_seconds": poll_seconds,
            "max_body_bytes": max_body_bytes,
            "drain_seconds": drain_seconds,
            "capture_rate": capture_rate,
            "capture_to": capture_to,
        }
        run_server(validated(ServeSettings, options, "command line"))

    run(start)
