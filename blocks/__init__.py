"""Typed configuration as Prefect Blocks, each with a default that works with no setup."""

from blocks.cluster import DaskCluster
from blocks.datastore import Datastore
from blocks.drift import DriftPolicy
from blocks.gate import GatePolicy
from blocks.mlflow import MlflowConnection
from blocks.study import StudyStorage
from blocks.workspace import WorkspaceConfig

__all__ = [
    "DaskCluster",
    "Datastore",
    "DriftPolicy",
    "GatePolicy",
    "MlflowConnection",
    "StudyStorage",
    "WorkspaceConfig",
]
