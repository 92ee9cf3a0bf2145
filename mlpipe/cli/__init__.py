"""The `mlpipe` command line: one small module per command.

Command modules import only typer and the standard library at the top; each command imports
the pipeline libraries it needs when it runs, so `mlpipe --help` answers at once and
`mlpipe rollback` loads no scikit-learn or great-expectations.
"""

from typing import Annotated

import typer

from mlpipe.cli.demo import demo, generate
from mlpipe.cli.deploy import deploy_app, worker
from mlpipe.cli.drift import drift
from mlpipe.cli.gc import gc
from mlpipe.cli.rollback import rollback
from mlpipe.cli.score import score
from mlpipe.cli.sweep import automl, sweep
from mlpipe.cli.train import train
from mlpipe.runtime import configure_process

app = typer.Typer(help="Open, self-hosted ML pipelines on Prefect, Dask and MLflow.", no_args_is_help=True)


@app.callback()
def _main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="show the libraries' own log lines")] = False,
) -> None:
    configure_process(verbose)


for command in (train, demo, generate, sweep, automl, score, drift, rollback, gc):
    app.command()(command)
app.add_typer(deploy_app, name="deploy")
app.command()(worker)
