"""Tiny models trained and registered the way training does (TabularModel, contract, signature), in seconds."""

import warnings

import mlflow
import pandas as pd
from mlflow.models import infer_signature
from sklearn.pipeline import Pipeline

from mlpipe.blocks import MlflowConnection
from mlpipe.demo_data import HOME, credit_default
from mlpipe.tasks.contract import DataContract
from mlpipe.tasks.data.contract_inference import infer_contract
from mlpipe.tasks.model.families import ModelSpec, build_estimator
from mlpipe.tasks.model.preprocessing import build_preprocessor
from mlpipe.tasks.model.pyfunc import TabularModel
from mlpipe.tasks.model.requirements import runtime_requirements
from mlpipe.tasks.model.train import CONTRACT_ARTIFACT, MODEL_ARTIFACT, encode_target

TARGETS = {"classification": "default", "regression": "interest_rate"}
CLOSED = "home_ownership"
"""The column whose categories the test contract declares closed (as a contract file would)."""


def demo_rows(rows: int, seed: int) -> pd.DataFrame:
    return credit_default(rows=rows, seed=seed).drop(columns=["application_id", "applied_at"])


def feature_rows(task: str, rows: int, seed: int) -> pd.DataFrame:
    """Rows as a caller sends them: the features only."""
    return demo_rows(rows, seed).drop(columns=[TARGETS[task]])


def contract_for(frame: pd.DataFrame, task: str) -> DataContract:
    contract = infer_contract(frame, TARGETS[task], task=task)  # type: ignore[arg-type]
    closed = contract.column(CLOSED).model_copy(update={"allowed_values": list(HOME)})
    return contract.model_copy(update={"columns": [closed if c.name == CLOSED else c for c in contract.columns]})


def register_model(
    tracking: MlflowConnection, name: str, task: str = "classification", seed: int = 0, trees: int = 20, depth: int = 3
) -> str:
    """Train on demo rows, log as training does, register; the new version (it holds no alias yet)."""
    frame = demo_rows(800, seed)
    contract = contract_for(frame, task)
    spec = ModelSpec(family="xgboost", seed=seed, params={"n_estimators": trees, "max_depth": depth})
    pipeline = Pipeline(
        [
            ("preprocess", build_preprocessor(contract, "xgboost")),
            ("model", build_estimator(spec, contract.task, n_jobs=1)),
        ]
    )
    y, classes = encode_target(frame[contract.target], contract, "demo", every_class=True)
    pipeline.fit(frame, y)
    model = TabularModel(pipeline, contract.task, classes)
    features = frame[contract.feature_names].head(5)
    with tracking.session():
        experiment = tracking.experiment_id(name)
        with mlflow.start_run(experiment_id=experiment), warnings.catch_warnings():
            warnings.filterwarnings("ignore")
            mlflow.log_text(contract.to_json(), CONTRACT_ARTIFACT)
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT,
                python_model=model,
                signature=infer_signature(features, model.predict(None, features)),
                pip_requirements=runtime_requirements(),
            )
        return str(mlflow.register_model(info.model_uri, name).version)
