"""Typed configuration as Prefect Blocks, each with a default that works with no setup."""

from mlpipe.blocks.cluster import DaskCluster
from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.drift import DriftPolicy
from mlpipe.blocks.gate import GatePolicy
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.blocks.study import StudyStorage
from mlpipe.blocks.workspace import WorkspaceConfig

__all__ = [
    "DaskCluster",
    "Datastore",
    "DriftPolicy",
    "GatePolicy",
    "MlflowConnection",
    "StudyStorage",
    "WorkspaceConfig",
]
