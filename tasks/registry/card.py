"""Model cards: one readable record per registered version, built from what MLflow holds about it.

A card is assembled from the registry and the training run alone (the version's tags and
description, the run's parameters, metrics and artifacts), so `mlpipe card` can write one for any
version long after its training, and its numbers are the logged numbers, not a second copy of
them. The training flow writes the data facts only the flow knows (the splits' rows and dated
periods) onto the version first, then logs the card to the run and shows it in the Prefect UI.
"""

import datetime as dt
import json
from typing import Any, TypeVar

import pandas as pd
from prefect.cache_policies import NO_CACHE
from pydantic import BaseModel

from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import ConfigError
from mlpipe.lineage import LINEAGE_KEYS
from mlpipe.redaction import redact
from mlpipe.tasks import artifacts
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import ColumnContract, DataContract, ObservedValues
from mlpipe.tasks.data.split import SplitRefs
from mlpipe.tasks.datasets import read_snapshot
from mlpipe.tasks.links import artifact_key, mlflow_links
from mlpipe.tasks.model.explanation import EXPLANATION_ARTIFACT, Explanation
from mlpipe.tasks.model.fairness import FAIRNESS_ARTIFACT, FairnessReport, GroupMetrics
from mlpipe.tasks.model.privacy import PRIVACY_ARTIFACT, PrivacyRecord
from mlpipe.tasks.model.train import CONTRACT_ARTIFACT
from mlpipe.tasks.registry.register import RUN_DESCRIPTION, Registration, record_tags

CARD_MARKDOWN, CARD_HTML = "model_card/model_card.md", "model_card/model_card.html"
SPLITS = ("train", "validation", "test")
SHOWN_FEATURES = 10
GROUP_METRICS = [name for name in GroupMetrics.model_fields if name not in ("group", "count")]
NOT_HYPERPARAMETERS = frozenset({"family", "task", "seed"})
"""Run parameters the card shows in their own rows rather than as hyperparameters."""


class DataFacts(BaseModel):
    """The dataset a version learned from: where it came from, how big each split was, and when it was dated."""

    source: str
    content_hash: str
    rows: int | None
    split_rows: dict[str, int]
    split_contents: dict[str, str]
    """Splits that hold more than their own rows: a sweep's winner is refit on train + validation."""
    periods: dict[str, str]
    """Per split, `first … last` of the time column (empty when the data has none)."""
    time_column: str | None
    contract_source: str
    """The contract file its promises come from, or how the contract was made."""
    features: list[dict[str, str]]


class ModelCard(BaseModel):
    """Everything the card says about one version, as values (the Markdown and HTML are renderings of it)."""

    name: str
    version: str
    aliases: list[str]
    registered_at: str
    run_id: str
    intended_use: str | None
    family: str
    task: str
    seed: str | None
    hyperparameters: dict[str, str]
    lineage: dict[str, str]
    data: DataFacts
    metrics: dict[str, float]
    gate: str | None
    gate_reason: str | None
    explanation: Explanation | None
    fairness: FairnessReport | None
    privacy: PrivacyRecord | None
    limitations: list[str]


def record_data_facts(
    registration: Registration, splits: SplitRefs, contract: DataContract, tracking: MlflowConnection, store: Datastore
) -> None:
    """Write each split's rows and dated period onto the version (once: a re-run keeps the first record).

    A split made of several (`dataset#train+validation`) says so. Only the time column is read,
    so this costs one column per split whatever the data's width.
    """
    tags = {f"mlpipe.rows.{split}": str(getattr(splits, split).rows) for split in SPLITS}
    for split in SPLITS:
        contents = getattr(splits, split).source.rpartition("#")[2]
        if "+" in contents:
            tags[f"mlpipe.contents.{split}"] = contents.replace("+", " + ")
    if contract.time_column:
        for split in SPLITS:
            period = time_period(read_snapshot(getattr(splits, split), store, [contract.time_column]))
            if period:
                tags[f"mlpipe.period.{split}"] = period
    record_tags(registration.name, registration.version, tags, tracking)


def time_period(frame: pd.DataFrame) -> str | None:
    """`first … last` of the one column of `frame` (None when it holds no value)."""
    values = pd.to_datetime(frame.iloc[:, 0], errors="coerce", utc=True).dropna()
    if values.empty:
        return None
    return f"{_instant(values.min())} … {_instant(values.max())}"


def _instant(value: pd.Timestamp) -> str:
    return value.strftime("%Y-%m-%d") if value == value.normalize() else value.strftime("%Y-%m-%d %H:%M:%S UTC")


def build_card(name: str, version: str, tracking: MlflowConnection) -> ModelCard:
    """The card of `name` version `version`, from the registry and the run that trained it.

    Raises:
        ConfigError: the model or version does not exist.
    """
    from mlflow.exceptions import MlflowException

    client = tracking.client()
    try:
        registered = client.get_model_version(name, version)
    except MlflowException as error:
        raise ConfigError(f"model '{name}' version {version}: {error.message}") from None
    if registered.run_id is None:
        raise ConfigError(f"model '{name}' version {version} was not registered from a run: it has no record to show")
    run = client.get_run(registered.run_id)
    tags, params, metrics = registered.tags, run.data.params, run.data.metrics
    texts = _run_texts(
        run.info.artifact_uri, [CONTRACT_ARTIFACT, EXPLANATION_ARTIFACT, FAIRNESS_ARTIFACT, PRIVACY_ARTIFACT], tracking
    )
    contract_json = texts.get(CONTRACT_ARTIFACT)
    if contract_json is None:
        raise ConfigError(f"model '{name}' version {version}: its run {run.info.run_id} has no {CONTRACT_ARTIFACT}")
    contract = DataContract.model_validate_json(contract_json)
    card = ModelCard(
        name=name,
        version=str(version),
        aliases=sorted(registered.aliases),
        registered_at=_utc(registered.creation_timestamp),
        run_id=run.info.run_id,
        intended_use=registered.description or run.data.tags.get(RUN_DESCRIPTION) or None,
        family=params.get("family", "unknown"),
        task=params.get("task", contract.task),
        seed=params.get("seed"),
        hyperparameters={key: value for key, value in sorted(params.items()) if key not in NOT_HYPERPARAMETERS},
        lineage={key.removeprefix("mlpipe."): run.data.tags[key] for key in LINEAGE_KEYS if run.data.tags.get(key)},
        data=_data_facts(tags, contract),
        metrics={key.removeprefix("test_"): value for key, value in sorted(metrics.items()) if key.startswith("test_")},
        gate=tags.get("mlpipe.gate"),
        gate_reason=tags.get("mlpipe.gate_reason"),
        explanation=_typed(Explanation, _json(texts.get(EXPLANATION_ARTIFACT))),
        fairness=_typed(FairnessReport, _json(texts.get(FAIRNESS_ARTIFACT))),
        privacy=_typed(PrivacyRecord, _json(texts.get(PRIVACY_ARTIFACT))),
        limitations=[],
    )
    return card.model_copy(update={"limitations": limitations(card, contract)})


def _data_facts(tags: dict[str, str], contract: DataContract) -> DataFacts:
    split_rows = {split: int(tags[f"mlpipe.rows.{split}"]) for split in SPLITS if f"mlpipe.rows.{split}" in tags}
    features = [{"name": column.name, "kind": column.kind, "values": _values(column)} for column in contract.features]
    return DataFacts(
        source=redact(tags.get("mlpipe.dataset_source", "unknown")),
        content_hash=tags.get("mlpipe.dataset_hash", "unknown"),
        rows=int(tags["mlpipe.dataset_rows"]) if "mlpipe.dataset_rows" in tags else sum(split_rows.values()) or None,
        split_rows=split_rows,
        split_contents={
            split: tags[f"mlpipe.contents.{split}"] for split in SPLITS if f"mlpipe.contents.{split}" in tags
        },
        periods={split: tags[f"mlpipe.period.{split}"] for split in SPLITS if f"mlpipe.period.{split}" in tags},
        time_column=contract.time_column,
        contract_source=contract.declared_in or "inferred from the first training data",
        features=features,
    )


def _values(column: ColumnContract) -> str:
    """A column's promised or observed values in a few words."""
    observed = column.observed or ObservedValues()
    if column.allowed_values:
        return "one of " + ", ".join(map(str, column.allowed_values))
    if column.minimum is not None or column.maximum is not None:
        return f"declared {_number(column.minimum)} … {_number(column.maximum)}"
    if observed.minimum is not None:
        return f"seen {_number(observed.minimum)} … {_number(observed.maximum)}"
    if observed.values:
        return f"seen {len(observed.values)} values"
    return ""


def limitations(card: ModelCard, contract: DataContract) -> list[str]:
    """What a reader must not assume about this version, said from its own record."""
    notes = []
    test_rows = card.data.split_rows.get("test")
    scope = f"{test_rows:,} held-out rows" if test_rows else "held-out rows"
    notes.append(
        f"Its scores come from {scope} of the same data it was trained on; how it does on other populations, "
        "later periods or other sources is not measured here (the drift and performance checks watch that)."
    )
    if contract.declared_in is None:
        notes.append(
            "Its data contract was inferred from the training data: the value ranges and categories it shows "
            "are what that data held, not promises about new data."
        )
    if card.gate == "rejected":
        notes.append(f"The gate rejected it: {card.gate_reason}")
    if card.fairness is None:
        notes.append("It was not assessed for fairness: no sensitive column was named (`--sensitive COLUMN`).")
    else:
        measured = ", ".join(f"'{column.column}'" for column in card.fairness.columns)
        notes.append(
            f"Fairness was measured on {measured} one column at a time: groups formed by several columns together, "
            "and groups not in the test split, were not assessed."
        )
    if card.privacy is None:
        notes.append("It was trained without differential privacy: it may memorise individual training rows.")
    else:
        notes.extend(card.privacy.warnings)
    if card.explanation is not None and card.explanation.method == "permutation":
        notes.append("Its explanation is global (permutation importance): there are no per-row contributions.")
    return notes


def render_markdown(card: ModelCard) -> str:
    """The card as Markdown: the text logged to MLflow, shown in the Prefect UI and printed by `mlpipe card`."""
    data = card.data
    lines = [
        f"# Model card: {card.name} v{card.version}",
        "",
        f"Aliases: {', '.join(card.aliases) or 'none'} · registered {card.registered_at} · MLflow run `{card.run_id}`",
        "",
        "## Intended use",
        "",
        _escape(card.intended_use)
        if card.intended_use
        else "Not stated: give `--description` when training (or `description:` in the config file's "
        "`training` section).",
        "",
        "## Model",
        "",
        *_table(
            ["", ""],
            [
                ["family", card.family],
                ["task", card.task],
                ["seed", card.seed or ""],
                *(
                    [[f"`{key}`", value] for key, value in card.hyperparameters.items()]
                    or [["hyperparameters", "defaults"]]
                ),
                *[[key.replace("_", " "), value] for key, value in card.lineage.items()],
            ],
        ),
        "",
        "## Data",
        "",
        *_table(
            ["", ""],
            [
                ["source", data.source],
                ["content hash", f"`{data.content_hash}`"],
                ["rows", _count(data.rows)],
                *[[_split_label(data, split), _count(rows)] for split, rows in data.split_rows.items()],
                *_periods(data),
                ["contract", data.contract_source],
            ],
        ),
        "",
        *_table(["feature", "kind", "values"], [[f["name"], f["kind"], f["values"]] for f in data.features]),
        "",
        "## Evaluation",
        "",
        *_table(["metric", "test"], [[name, _number(value)] for name, value in card.metrics.items()]),
        "",
        f"Gate: **{card.gate or 'not recorded'}**" + (f" — {_escape(card.gate_reason)}" if card.gate_reason else ""),
        "",
        "## Explanation",
        "",
        *_explanation(card.explanation),
        "",
        "## Fairness",
        "",
        *_fairness(card.fairness),
        "",
        "## Privacy",
        "",
        *_privacy(card.privacy),
        "",
        "## Limitations",
        "",
        *[f"- {_escape(note)}" for note in card.limitations],
    ]
    return "\n".join(lines) + "\n"


def render_html(card: ModelCard) -> str:
    """The card as a standalone HTML page (raw HTML in user text is escaped, never passed through)."""
    from html import escape

    from markdown_it import MarkdownIt

    body = MarkdownIt("commonmark", {"html": False}).enable("table").render(render_markdown(card))
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(card.name)} v{escape(card.version)}: model card</title><style>{_STYLE}</style></head>\n"
        f"<body>\n{body}</body></html>\n"
    )


_STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem;line-height:1.45}"
    "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.2rem .6rem;text-align:left}"
    "code{background:#f4f4f4;padding:0 .2rem}"
)


def _periods(data: DataFacts) -> list[list[str]]:
    if data.periods:
        return [[f"{split} period", period] for split, period in data.periods.items()]
    if data.time_column:
        return [["period", f"by `{data.time_column}`: not recorded"]]
    return [["period", "no time column: the rows are not dated"]]


def _explanation(explanation: Explanation | None) -> list[str]:
    if explanation is None:
        return ["No explanation was recorded for this version."]
    top = list(explanation.importances.items())[:SHOWN_FEATURES]
    return [
        f"Importance of each input column: {explanation.describe()}.",
        "",
        *_table(["feature", "importance"], [[name, _number(value)] for name, value in top]),
    ]


def _fairness(report: FairnessReport | None) -> list[str]:
    if report is None:
        return ["Not assessed: no sensitive column was named."]
    positive = f"; positive class `{report.positive_class}`" if report.positive_class else ""
    lines = [f"Measured on {report.rows:,} test rows{positive}."]
    for column in report.columns:
        shown = [name for name in GROUP_METRICS if any(getattr(g, name) is not None for g in column.groups)]
        role = "a model input" if column.model_input else "not a model input"
        lines += ["", f"**{column.column}** ({role})", ""]
        lines += _table(
            ["group", "count", *shown],
            [[g.group, f"{g.count:,}", *(_number(getattr(g, name)) for name in shown)] for g in column.groups],
        )
        for metric, disparity in column.differences.items():
            lines += ["", f"- {metric}: {_number(disparity.value)} ({_escape(disparity.describe())})"]
    return lines


def _privacy(record: PrivacyRecord | None) -> list[str]:
    if record is None:
        return ["Trained without differential privacy."]
    rows = [
        ["epsilon", _number(record.epsilon)],
        ["delta", _number(record.delta)],
        ["mechanism", record.mechanism],
        ["library", record.library],
        ["bounds from the contract", ", ".join(record.bounds_from_contract) or "none"],
        ["bounds from the data", ", ".join(record.bounds_from_data) or "none"],
    ]
    if record.data_norm is not None:
        rows.append(["rows clipped to L2 norm", _number(record.data_norm)])
    if record.target_bounds is not None:
        rows.append(["target clipped to", " … ".join(map(_number, record.target_bounds))])
    return _table(["", ""], rows)


def _split_label(data: DataFacts, split: str) -> str:
    contents = data.split_contents.get(split)
    return f"{split} rows ({contents})" if contents else f"{split} rows"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    if not rows:
        return ["(none)"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(_escape(cell) for cell in row) + " |" for row in rows]


def _escape(text: str | None) -> str:
    """Text safe inside a Markdown table cell or list item: pipes escaped, line breaks as spaces."""
    return (text or "").replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _count(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def _utc(milliseconds: int | None) -> str:
    if not milliseconds:
        return "unknown"
    return dt.datetime.fromtimestamp(milliseconds / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")


def _run_texts(artifact_uri: str, paths: list[str], tracking: MlflowConnection) -> dict[str, str]:
    """The text of each of `paths` under the run's `artifact_uri`, absent ones left out.

    Read through the run's artifact store directly, each folder listed once and only the files it
    holds fetched: the client's per-file calls look the run up again each time, and a file a run
    lacks costs an MLflow server several requests before it fails (18 requests became 6).
    """
    import tempfile
    from pathlib import Path

    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    with tracking.session(), tempfile.TemporaryDirectory() as scratch:
        store = get_artifact_repository(artifact_uri)
        present = {
            info.path
            for folder in {p.rpartition("/")[0] for p in paths}
            for info in store.list_artifacts(folder or None)
        }
        return {
            path: Path(store.download_artifacts(path, scratch)).read_text(encoding="utf-8")
            for path in paths
            if path in present
        }


Typed = TypeVar("Typed", bound=BaseModel)


def _typed(model: type[Typed], content: dict[str, Any] | None) -> Typed | None:
    return model.model_validate(content) if content is not None else None


def _json(text: str | None) -> dict[str, Any] | None:
    return json.loads(text) if text else None


def model_card(
    registration: Registration, splits: SplitRefs, contract: DataContract, tracking: MlflowConnection, store: Datastore
) -> ModelCard:
    """Record the data facts on the version, then log its card (Markdown and HTML) to the run and the Prefect UI."""
    record_data_facts(registration, splits, contract, tracking, store)
    card = build_card(registration.name, registration.version, tracking)
    markdown = render_markdown(card)
    client = tracking.client()
    client.log_text(card.run_id, markdown, CARD_MARKDOWN)
    client.log_text(card.run_id, render_html(card), CARD_HTML)
    artifacts.markdown(
        f"{artifact_key(registration.name)}-model-card",
        markdown,
        f"{registration.name} v{registration.version}: model card",
        links=mlflow_links(tracking, run_id=card.run_id, models=[(registration.name, registration.version)]),
    )
    return card


model_card_task = pipeline_task(model_card, cache_policy=NO_CACHE)
