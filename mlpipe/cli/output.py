"""How commands report: one console for results, one for errors, and errors as one line with exit code 1."""

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rich.console import Console

from mlpipe.redaction import redact

if TYPE_CHECKING:
    from rich.text import Text

    from mlpipe.flows.training import TrainingSummary


class _RedactingConsole(Console):
    """A console that redacts every string it renders (URI passwords, query strings, loaded secrets),
    and folds lines only on a terminal.

    Strings are redacted when rich turns them into text, before markup, wrapping or table
    layout, so a URI folded across lines or cut by a table cell is already masked.
    """

    def print(self, *objects: Any, soft_wrap: bool | None = None, **options: Any) -> None:
        """Print; when output is not a terminal, lines are not folded at 80 columns (a path stays whole)."""
        super().print(*objects, soft_wrap=not self.is_terminal if soft_wrap is None else soft_wrap, **options)

    def render_str(self, text: str, **options: Any) -> "Text":
        return super().render_str(redact(text), **options)

    def print_json(self, json: str | None = None, *, data: Any = None, **options: Any) -> None:
        super().print_json(redact(json), data=redact(data), **options)


PIPED_WIDTH = 1000
"""Columns a console lays tables out in when its output is not a terminal: wide enough for a table
to keep every cell whole (at rich's 80, a drift report cut feature names to "credit_u…")."""


def _console(stderr: bool = False) -> _RedactingConsole:
    console = _RedactingConsole(stderr=stderr)
    if not console.is_terminal and "COLUMNS" not in os.environ:  # a user's COLUMNS still decides
        console.width = PIPED_WIDTH
    return console


out = _console()
err = _console(stderr=True)


def run(action: Callable[[], None]) -> None:
    """Run a command; errors become one line on stderr and exit code 1.

    Errors mlpipe raises name the file, column or field already; anything else (an unreachable
    tracking server, a bug) is shown as its type and message, with the traceback when
    `MLPIPE_DEBUG=1`.
    """
    from mlpipe.errors import MlpipeError

    try:
        action()
    except MlpipeError as error:
        err.print(f"[red]error:[/] {error}", soft_wrap=True, highlight=False)
        sys.exit(1)
    except Exception as error:
        if os.environ.get("MLPIPE_DEBUG") == "1":
            raise
        err.print(f"[red]error:[/] {type(error).__name__}: {error}", soft_wrap=True, highlight=False)
        sys.exit(1)


def print_training(summary: "TrainingSummary") -> None:
    """Metrics, fairness differences, the gate's decision, aliases, dataset and the MLflow run of a training."""
    from rich.table import Table

    table = Table(title=f"{summary.model_name} v{summary.version}", show_header=True)
    table.add_column("metric")
    table.add_column("test", justify="right")
    for metric, value in summary.metrics.items():
        table.add_row(metric, f"{value:.4f}")
    out.print(table)
    for column in summary.fairness.columns if summary.fairness else []:
        differences = "; ".join(f"{m} {d.value:.4f} ({d.describe()})" for m, d in column.differences.items())
        out.print(f"Fairness by '{column.column}' ({len(column.groups)} groups): {differences or 'no differences'}")
    verdict = "[green]passed[/]" if summary.gate.passed else "[yellow]rejected[/]"
    out.print(f"Gate {verdict}: {summary.gate.reason}")
    out.print(f"Aliases: {', '.join(summary.aliases) or 'none'}")
    out.print(f"Dataset: {summary.dataset.source} ({summary.dataset.rows:,} rows, sha256 {summary.dataset.short_hash})")
    out.print(f"MLflow run: {summary.mlflow_run}")
