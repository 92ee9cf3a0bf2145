"""`mlpipe card`: the model card of a registered version, printed or written as Markdown or HTML.

It reads only the registry and the version's training run, so it answers in the time MLflow's
client takes, for any version, including those trained before cards were logged.
"""

from typing import Annotated

import typer

from mlpipe.cli import options as opt
from mlpipe.cli.output import out, run

CARD_SUFFIXES = (".md", ".html")


def card(
    model: Annotated[str, typer.Argument(help="NAME (its champion), NAME@ALIAS or NAME/VERSION")],
    output: Annotated[str | None, typer.Option(help="write it here instead: a .md or .html file")] = None,
    config: Annotated[opt.ConfigFile, opt.config_option("mlflow")] = None,
) -> None:
    """Show a registered version's model card: use, data, metrics, gate, explanation, fairness, privacy, limits."""

    def show() -> None:
        from mlpipe.blocks.config import run_config
        from mlpipe.errors import ConfigError
        from mlpipe.tasks.registry.card import build_card, render_html, render_markdown
        from mlpipe.tasks.registry.model_ref import pin_version
        from mlpipe.tasks.storage import write_bytes

        if output and not output.lower().endswith(CARD_SUFFIXES):
            raise ConfigError(f"--output '{output}': expected a file name ending in .md or .html")
        tracking = run_config(config).workspace.resolve().mlflow
        bare_name = not any(mark in model for mark in ("@", "/", ":"))
        the_card = build_card(*pin_version(f"{model}@champion" if bare_name else model, tracking), tracking)
        if output is None:
            out.print(render_markdown(the_card), markup=False, highlight=False, soft_wrap=True)
            return
        render = render_html if output.lower().endswith(".html") else render_markdown
        write_bytes(output, render(the_card).encode())
        out.print(f"Wrote the model card of {the_card.name} v{the_card.version} to {output}")

    run(show)
