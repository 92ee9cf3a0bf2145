"""The `mlpipe` command line: one small module per command.

Command modules import only typer and the standard library at the top; each command imports
the pipeline libraries it needs when it runs, so `mlpipe --help` answers at once and
`mlpipe rollback` loads no scikit-learn or great-expectations.
"""

import atexit
import sys
from gc import freeze as exempt_from_collection
from typing import Annotated

import typer

from mlpipe.cli.card import card
from mlpipe.cli.demo import demo, generate
from mlpipe.cli.deploy import deploy_app, worker
from mlpipe.cli.drift import drift
from mlpipe.cli.explain import explain
from mlpipe.cli.gc import gc
from mlpipe.cli.output import err
from mlpipe.cli.rollback import rollback
from mlpipe.cli.score import score
from mlpipe.cli.serve import serve
from mlpipe.cli.sweep import automl, sweep
from mlpipe.cli.train import train
from mlpipe.cli.up import down, status, up
from mlpipe.runtime import configure_process

app = typer.Typer(help="Open, self-hosted ML pipelines on Prefect, Dask and MLflow.", no_args_is_help=True)


USES_SERVERS = {
    "train",
    "demo",
    "sweep",
    "automl",
    "score",
    "explain",
    "card",
    "drift",
    "rollback",
    "deploy",
    "worker",
    "gc",
    "serve",
}
"""Commands that say so when they use the servers `mlpipe up` runs."""


@app.callback()
def _main(
    context: typer.Context,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show the libraries' own log lines")] = False,
) -> None:
    # Registered first, so it runs after every other exit handler: the interpreter's last garbage
    # collection would walk every object the libraries created (1.8 s after a training here), only
    # to free memory the process is about to give back anyway. Finalizers and flushes still run.
    atexit.register(exempt_from_collection)
    used = configure_process(verbose)
    if used and context.invoked_subcommand in USES_SERVERS and "--help" not in sys.argv:
        names = {"PREFECT_API_URL": "Prefect", "MLFLOW_TRACKING_URI": "MLflow", "DASK_SCHEDULER_ADDRESS": "Dask"}
        servers = " · ".join(f"{names[name]} {value}" for name, value in used.items())
        err.print(f"[dim]Using the servers of `mlpipe up`: {servers}[/]", highlight=False, soft_wrap=True)


commands = (train, demo, generate, sweep, automl, score, explain, card, drift, rollback, gc, serve, up, down, status)
for command in commands:
    app.command()(command)
app.add_typer(deploy_app, name="deploy")
app.command()(worker)
