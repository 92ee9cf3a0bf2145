"""The training pipeline: ingest → validate → split → train → evaluate → gate → register → promote → model card."""

from prefect import unmapped
from pydantic import BaseModel, Field

from mlpipe.blocks.workspace import WorkspaceConfig
from mlpipe.flows.common import (
    Device,
    cluster_capacity,
    note_cpu_only,
    open_workspace,
    pipeline_flow,
    placed,
    resolve_device,
)
from mlpipe.tasks.contract import DataContract, TaskType
from mlpipe.tasks.data.contract_inference import contract_task
from mlpipe.tasks.data.ingest import ingest_task
from mlpipe.tasks.data.split import SplitRefs, SplitSpec, split_task
from mlpipe.tasks.data.validate import accept_task, check_part_task, validate_task
from mlpipe.tasks.datasets import DatasetRef, partitions
from mlpipe.tasks.links import run_link
from mlpipe.tasks.model.evaluate import evaluate_task
from mlpipe.tasks.model.fairness import FairnessReport
from mlpipe.tasks.model.families import ModelSpec
from mlpipe.tasks.model.train import train_task
from mlpipe.tasks.registry.card import model_card_task
from mlpipe.tasks.registry.champion import champion_contract_task
from mlpipe.tasks.registry.gate import GateDecision, gate_task, require_binary, require_sensitive
from mlpipe.tasks.registry.register import promote_task, register_task
from mlpipe.tasks.registry.report import publish_task
from mlpipe.validation import Name, Strict


class DataParams(Strict):
    """Which data, which target, which registered model: what every training-like flow starts from."""

    data: str = Field(description="CSV or Parquet file, a folder of them or a glob: a local path or any fsspec URL")
    target: str = Field(description="column to predict")
    name: Name = Field(description="registered model name")
    task: TaskType | None = Field(default=None, description="default: inferred from the target column")
    split: SplitSpec = Field(default_factory=SplitSpec)
    time_column: str | None = Field(default=None, description="timestamp column (not a feature)")
    exclude: list[str] = Field(default_factory=list, description="columns that are not features, e.g. ids")
    sensitive: list[str] = Field(
        default_factory=list,
        description="columns whose groups the fairness report compares (e.g. sex); not features unless a contract "
        "lists them",
    )
    contract_file: str | None = Field(default=None, description="data contract to enforce instead of inferring")


class TrainingParams(DataParams):
    """What to train: the data, the column to predict, the registered model's name and the model family."""

    model: ModelSpec = Field(default_factory=ModelSpec)
    device: Device = Field(
        default="cpu", description="cuda: xgboost on a GPU worker; auto: cuda if the cluster has one"
    )
    description: str | None = Field(
        default=None, description="what the model is for and who may use it: the model card's intended use"
    )


class PreparedData(BaseModel):
    """A validated dataset, its contract and its split, and the sensitive columns its evaluation reports on."""

    dataset: DatasetRef
    contract: DataContract
    splits: SplitRefs
    sensitive: list[str] = []


class TrainingSummary(BaseModel):
    """What a training run produced."""

    model_name: str
    version: str
    aliases: list[str]
    metrics: dict[str, float]
    fairness: FairnessReport | None = None
    gate: GateDecision
    run_id: str
    dataset: DatasetRef
    splits: SplitRefs
    mlflow_run: str


def prepare_data(params: DataParams, workspace: WorkspaceConfig) -> PreparedData:
    """Ingest → contract (the user's, the champion's or inferred) → validate → split; invalid data stops the run here.

    The flow waits for each result so that a failure stops the pipeline with the step's own error; a
    fairness limit the run cannot measure stops it before ingest, or once the contract says the task.
    Only the champion's contract is read while ingest runs: it needs nothing ingest makes.
    """
    require_sensitive(workspace.gate.fairness, params.sensitive)
    store = workspace.datastore
    ingested = ingest_task.submit(params.data, store)
    champion_contract = None if params.contract_file else champion_contract_task.submit(params.name, workspace.mlflow)
    raw = ingested.result()
    champion = champion_contract.result() if champion_contract else None
    contract = contract_task.submit(
        raw,
        params.target,
        params.name,
        store,
        task=params.task,
        time_column=params.time_column,
        exclude=params.exclude,
        contract_file=params.contract_file,
        champion=champion,
        sensitive=params.sensitive,
    ).result()
    require_binary(workspace.gate.fairness, contract, params.name)
    if raw.partitioned:  # each partition checked on a worker of its own, the counts merged
        checks = check_part_task.map(partitions(raw), unmapped(contract), unmapped(store))
        dataset = accept_task.submit(raw, contract, checks).result()  # type: ignore[arg-type]  # futures: resolved
    else:
        dataset = validate_task.submit(raw, contract, store).result()
    splits = split_task.submit(dataset, contract, params.split, store).result()
    return PreparedData(dataset=dataset, contract=contract, splits=splits, sensitive=params.sensitive)


def train_and_register(
    data: PreparedData,
    splits: SplitRefs,
    spec: ModelSpec,
    name: str,
    workspace: WorkspaceConfig,
    tags: dict[str, str] | None = None,
    device: Device = "cpu",
    description: str | None = None,
) -> TrainingSummary:
    """Train (on a GPU worker when `device` says so) → evaluate → gate → register → promote → publish → card.

    `tags` link the model to what chose it (a sweep); `description` is the version's intended use.
    """
    store, tracking = workspace.datastore, workspace.mlflow
    contract = data.contract
    chosen = "cpu" if device == "cpu" else resolve_device(device, cluster_capacity()[1])
    note_cpu_only([spec.family], chosen)
    spec, placement = placed(spec, chosen)
    with placement:
        model = train_task.submit(splits, contract, spec, name, tracking, store, tags or {}).result()
    evaluation = evaluate_task.submit(model, splits, contract, tracking, store, sensitive=data.sensitive).result()
    decision = gate_task.submit(evaluation, splits, contract, name, workspace.gate, tracking, store).result()
    registration = register_task.submit(model, evaluation, data.dataset, name, tracking, description).result()
    promotion = promote_task.submit(
        registration,
        decision,
        evaluation=evaluation,
        splits=splits,
        contract=contract,
        policy=workspace.gate,
        tracking=tracking,
        store=store,
    ).result()
    registration, decision = promotion.registration, promotion.decision
    published = publish_task.submit(model, evaluation, decision, registration, tracking)
    card = model_card_task.submit(registration, splits, contract, tracking, store)  # at once: neither needs the other
    published.result(), card.result()
    return TrainingSummary(
        model_name=name,
        version=registration.version,
        aliases=registration.aliases,
        metrics=evaluation.metrics,
        fairness=evaluation.fairness,
        gate=decision,
        run_id=model.run_id,
        dataset=data.dataset,
        splits=splits,
        mlflow_run=run_link(tracking, model.experiment_id, model.run_id),
    )


@pipeline_flow("training")
def training(params: TrainingParams, config: WorkspaceConfig | None = None) -> TrainingSummary:
    """Train, evaluate, gate and register one model; unchanged steps are served from cache."""
    workspace = open_workspace(config)
    data = prepare_data(params, workspace)
    return train_and_register(
        data, data.splits, params.model, params.name, workspace, device=params.device, description=params.description
    )
