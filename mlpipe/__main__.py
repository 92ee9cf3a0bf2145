"""`python -m mlpipe`: the same command line as `mlpipe`."""

from mlpipe.cli import app

app(prog_name="mlpipe")
