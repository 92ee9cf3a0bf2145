"""The `mlpipe` command: run by the workspace's command server when `mlpipe up` runs one, else in this process."""

import sys


def main() -> None:
    from mlpipe.command_client import forward

    status = forward(sys.argv[1:])
    if status is not None:
        sys.exit(status)
    from mlpipe.cli import app

    app(prog_name="mlpipe")
