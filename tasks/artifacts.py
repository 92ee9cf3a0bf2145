"""What a run shows in the Prefect UI's Artifacts tab: the one module that writes Prefect artifacts.

Each artifact says where its evidence is: `links` (see `mlpipe.tasks.links.mlflow_links`) names the
MLflow run and model version behind it, in the description the UI renders as markdown under a
table, and at the end of a markdown artifact's text. Keys come from `links.artifact_key`, so the
latest artifact of a model is one click away on the UI's Artifacts page.
"""

from typing import Any
from uuid import UUID

from prefect.artifacts import (
    create_link_artifact,
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)


def table(key: str, rows: list[dict[str, Any]], title: str, *, links: str) -> None:
    """A table (one dict per row) titled `title`, with `links` under the title."""
    create_table_artifact(key=key, table=rows, description=f"{title}\n\n{links}" if links else title)


def markdown(key: str, text: str, title: str, *, links: str) -> None:
    """A markdown report ending with `links`."""
    create_markdown_artifact(key=key, markdown=f"{text.rstrip()}\n\n{links}\n" if links else text, description=title)


def link(key: str, url: str, text: str, title: str) -> None:
    """A link artifact when `url` opens in a browser; otherwise how to get there (e.g. `mlflow ui …`) as text."""
    if url.startswith(("http://", "https://")):
        create_link_artifact(key=key, link=url, link_text=text, description=title)
    else:
        create_markdown_artifact(key=key, markdown=f"{text}: `{url}`", description=title)


def progress(key: str, percent: float, title: str) -> UUID:
    """A progress bar the run moves with `advance`."""
    return UUID(str(create_progress_artifact(percent, key=key, description=title)))


def advance(artifact: UUID, percent: float) -> None:
    """Move a progress bar made by `progress`."""
    update_progress_artifact(artifact, percent)
