"""Train: fit preprocessing + estimator on the train split and log it to MLflow as a pyfunc model."""

import time
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict

from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.errors import DataError
from mlpipe.lineage import lineage_tags
from mlpipe.tasks.caching import pipeline_task
from mlpipe.tasks.contract import DataContract, TaskType
from mlpipe.tasks.data.split import SplitRefs
from mlpipe.tasks.datasets import DatasetRef, head_rows, read_snapshot
from mlpipe.tasks.model.families import GPU_FAMILIES, PRIVATE_FAMILIES, ModelSpec, build_estimator
from mlpipe.tasks.model.privacy import PRIVACY_ARTIFACT, PrivacyRecord, fit_private
from mlpipe.tasks.model.requirements import check_requirements_quickly, runtime_requirements
from mlpipe.workspace import available_cores

if TYPE_CHECKING:
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.models.model import ModelInfo
    from sklearn.compose import ColumnTransformer

    from mlpipe.tasks.model.pyfunc import TabularModel

MODEL_ARTIFACT = "model"
CONTRACT_ARTIFACT = "contract.json"


class TrainedModel(BaseModel):
    """A model logged to MLflow: where it is and what produced it."""

    run_id: str
    experiment_id: str
    model_uri: str
    task: TaskType
    spec: ModelSpec
    privacy: PrivacyRecord | None = None
    """For a differentially private family: the epsilon it spent and where its bounds came from."""

    def outputs_present(self, inputs: Mapping[str, Any]) -> bool:
        """Whether the training run is still in the tracking store the task logged it to (not deleted)."""
        from mlflow.exceptions import MlflowException

        tracking = next((value for value in inputs.values() if isinstance(value, MlflowConnection)), None)
        if tracking is None:
            return True
        try:
            return tracking.client().get_run(self.run_id).info.lifecycle_stage == "active"
        except MlflowException as error:
            if error.error_code in ("RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"):
                return False
            raise


def train(
    splits: SplitRefs,
    contract: DataContract,
    spec: ModelSpec,
    model_name: str,
    tracking: MlflowConnection,
    store: Datastore,
    tags: dict[str, str] | None = None,
) -> TrainedModel:
    """Fit on the train split (the validation split feeds per-round metrics) and log the model.

    `tags` are added to the MLflow run, e.g. the sweep that chose these hyperparameters. A
    differentially private family is fitted once, from the contract's bounds, and its privacy
    record is stored with the run (`privacy.json`) and carried to registration.
    """
    from sklearn.pipeline import Pipeline

    from mlpipe.tasks.model.distributed import trains_distributed
    from mlpipe.tasks.model.pyfunc import TabularModel

    estimator = build_estimator(spec, contract.task, n_jobs=available_cores(), contract=contract)
    privacy = None
    started = time.perf_counter()
    distributed = trains_distributed(spec, splits.train)
    if distributed:
        from mlpipe.tasks.model.distributed import fit_distributed

        preprocessor, estimator = fit_distributed(estimator, splits, contract, store)
        examples = head_rows(splits.train, store, 5)
        classes = contract.column(contract.target).allowed_values if contract.task == "classification" else None
    else:
        train_rows = read_snapshot(splits.train, store)
        preprocessor, classes, privacy = _fit(estimator, train_rows, splits, contract, spec, store)
        examples = train_rows.head(5)
    fit_seconds = time.perf_counter() - started
    if spec.family in GPU_FAMILIES and estimator.get_params().get("device") not in (None, "cpu"):
        # Trained on a GPU, scored anywhere: the registered model predicts on the CPU of whichever
        # worker or server loads it, with no device-mismatch fallback on a GPU host either.
        estimator.set_params(device="cpu")
    model = TabularModel(Pipeline([("preprocess", preprocessor), ("model", estimator)]), contract.task, classes)
    fitted = FitRecord(
        examples=examples, rows=splits.train.rows, seconds=fit_seconds, privacy=privacy, distributed=distributed
    )
    return _log(model, estimator, contract, spec, splits, model_name, tracking, fitted, tags or {})


class FitRecord(BaseModel):
    """What a fit leaves to log besides the model: a few input rows, how many it learned from, its time, its privacy."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    examples: pd.DataFrame
    rows: int
    seconds: float
    privacy: PrivacyRecord | None = None
    distributed: bool = False


def _fit(
    estimator: Any,
    train_rows: pd.DataFrame,
    splits: SplitRefs,
    contract: DataContract,
    spec: ModelSpec,
    store: Datastore,
) -> tuple["ColumnTransformer", list[Any] | None, PrivacyRecord | None]:
    """Fit preprocessing and `estimator` in this task: its fitted preprocessor, the class labels, the privacy spent."""
    from threadpoolctl import threadpool_limits

    from mlpipe.tasks.model.preprocessing import build_preprocessor

    validation_rows = read_snapshot(splits.validation, store)
    preprocessor = build_preprocessor(contract, spec.family)
    y_train, classes = encode_target(train_rows[contract.target], contract, splits.train.source, every_class=True)
    y_validation, _ = encode_target(validation_rows[contract.target], contract, splits.validation.source)
    privacy = None
    with threadpool_limits(available_cores()):  # Dask worker processes start with one BLAS/OpenMP thread
        x_train = preprocessor.fit_transform(train_rows)
        fit_kwargs = {}
        if spec.family == "xgboost":
            fit_kwargs = {"eval_set": [(preprocessor.transform(validation_rows), y_validation)], "verbose": False}
        if spec.family in PRIVATE_FAMILIES:
            privacy = fit_private(estimator, x_train, y_train, contract, spec.family)
        else:
            estimator.fit(x_train, y_train, **fit_kwargs)
    return preprocessor, classes, privacy


def encode_target(
    target: pd.Series, contract: DataContract, source: str, every_class: bool = False
) -> tuple[np.ndarray, list[Any] | None]:
    """Class labels as 0..k-1 in the contract's order (and that label list); floats for regression.

    Raises:
        DataError: a label the contract does not know, or (with `every_class`) a class with no rows.
    """
    if contract.task == "regression":
        return target.to_numpy(dtype="float64"), None
    classes = contract.column(contract.target).allowed_values or []
    codes = target.map({label: i for i, label in enumerate(classes)})
    if codes.isna().any():
        unknown = sorted(set(target[codes.isna()].unique().tolist()), key=str)
        raise DataError(f"{source}: target '{target.name}' has labels {unknown} outside the contract's {classes}")
    present = set(codes.unique().tolist())
    if every_class and len(present) < len(classes):
        absent = [label for i, label in enumerate(classes) if i not in present]
        raise DataError(f"{source}: target '{target.name}' class(es) {absent} have no rows to learn from")
    return codes.to_numpy(dtype="int64"), list(classes)


def _log(
    model: "TabularModel",
    estimator: object,
    contract: DataContract,
    spec: ModelSpec,
    splits: SplitRefs,
    model_name: str,
    tracking: MlflowConnection,
    fitted: FitRecord,
    extra_tags: dict[str, str],
) -> TrainedModel:
    import mlflow

    experiment_id = tracking.experiment_id(model_name)
    tags = {
        **extra_tags,
        "mlpipe.model_name": model_name,
        "mlpipe.family": spec.family,
        "mlpipe.train_split_hash": splits.train.content_hash,
        **(fitted.privacy.tags() if fitted.privacy else {}),
        **lineage_tags(),
    }
    with tracking.session():
        run = mlflow.start_run(experiment_id=experiment_id, run_name=f"{model_name}-{spec.family}", tags=tags)
        try:
            info = _log_run(model, estimator, contract, spec, splits, fitted)
        except BaseException:
            # A retry starts a new run; leave no half-logged one behind for users to mistake.
            mlflow.end_run("FAILED")
            tracking.client().delete_run(run.info.run_id)
            raise
        mlflow.end_run()
    return TrainedModel(
        run_id=run.info.run_id,
        experiment_id=experiment_id,
        model_uri=info.model_uri,
        task=contract.task,
        spec=spec,
        privacy=fitted.privacy,
    )


def _log_run(
    model: "TabularModel",
    estimator: object,
    contract: DataContract,
    spec: ModelSpec,
    splits: SplitRefs,
    fitted: FitRecord,
) -> "ModelInfo":
    """Parameters, inputs, learning curve, contract, privacy record and the model, into the active run."""
    import mlflow
    from mlflow.models import infer_signature

    features, privacy = fitted.examples[contract.feature_names], fitted.privacy
    spent = {"epsilon": privacy.epsilon} if privacy else {}  # logged even when the family's default was used
    distributed = {"distributed": True} if fitted.distributed else {}
    mlflow.log_params(
        {"family": spec.family, "task": contract.task, "seed": spec.seed, **distributed, **spent, **spec.params}
    )
    mlflow.log_metrics({"fit_seconds": fitted.seconds, "train_rows": fitted.rows})
    for context, ref in (("training", splits.train), ("validation", splits.validation), ("test", splits.test)):
        mlflow.log_input(_as_mlflow_dataset(ref), context=context)
    mlflow.log_text(contract.to_json(), CONTRACT_ARTIFACT)
    if privacy is not None:
        mlflow.log_dict(privacy.model_dump(mode="json"), PRIVACY_ARTIFACT)
    check_requirements_quickly()
    with warnings.catch_warnings():
        # The signature keeps the training dtypes on purpose (raw rows must score as they
        # are); MLflow's hint about integer columns and nulls is for hand-built examples.
        warnings.filterwarnings("ignore", message="Hint: Inferred schema contains integer")
        warnings.filterwarnings("ignore", message=".*serialized using CloudPickle")
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT,
            python_model=model,
            signature=infer_signature(features, model.predict(None, features)),
            input_example=features,
            # a private model is diffprivlib's estimator
            pip_requirements=runtime_requirements(*(["diffprivlib"] if privacy else [])),
        )
    # After the model: logging it links the run's step-0 metrics to it, reading each metric's whole history.
    _log_learning_curve(estimator)
    return info


def _as_mlflow_dataset(ref: DatasetRef) -> "MetaDataset":
    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset

    with warnings.catch_warnings():  # a file:// URI matches two equivalent local source types
        warnings.filterwarnings("ignore", message="The specified dataset source can be interpreted")
        source = resolve_dataset_source(ref.uri)
    return MetaDataset(source=source, name=ref.source, digest=ref.content_hash[:16])  # type: ignore[abstract]


def _log_learning_curve(estimator: object) -> None:
    """xgboost's per-round validation metric, logged in one batch (one call per round is slow)."""
    import mlflow
    from mlflow.entities import Metric
    from xgboost import XGBModel

    if not isinstance(estimator, XGBModel):  # train gives xgboost the validation split as eval_set
        return
    history = estimator.evals_result()["validation_0"]
    metrics = [
        Metric(key=f"validation_{name}", value=float(value), timestamp=0, step=step)
        for name, values in history.items()
        for step, value in enumerate(values)
    ]
    run = mlflow.active_run()
    assert run is not None
    mlflow.MlflowClient().log_batch(run.info.run_id, metrics=metrics)


train_task = pipeline_task(train)
