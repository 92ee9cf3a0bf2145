"""The workspace: the four pieces of configuration a pipeline needs, loaded once per flow run."""

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from blocks.cluster import DaskCluster
from blocks.datastore import Datastore
from blocks.drift import DriftPolicy
from blocks.gate import GatePolicy
from blocks.mlflow import MlflowConnection
from blocks.study import StudyStorage
from mlpipe.errors import ConfigError, load_yaml, validated


class WorkspaceConfig(BaseModel):
    """MLflow, datastore, Dask cluster, gate and drift policies, sweep storage; each has a working local default."""

    mlflow: MlflowConnection = Field(default_factory=MlflowConnection)
    datastore: Datastore = Field(default_factory=Datastore)
    cluster: DaskCluster = Field(default_factory=DaskCluster)
    gate: GatePolicy = Field(default_factory=GatePolicy)
    studies: StudyStorage = Field(default_factory=StudyStorage)
    drift: DriftPolicy = Field(default_factory=DriftPolicy)

    def resolve(self) -> "WorkspaceConfig":
        """Fill defaults and environment overrides in, so tasks on any worker see the same values."""
        return WorkspaceConfig(
            mlflow=self.mlflow.resolve(),
            datastore=self.datastore.resolve(),
            cluster=self.cluster.resolve(),
            gate=self.gate,
            studies=self.studies.resolve(),
            drift=self.drift,
        )

    @classmethod
    def from_mapping(cls, data: dict[str, Any], source: str) -> "WorkspaceConfig":
        """Build from the `mlflow`/`datastore`/`cluster`/`gate`/`studies`/`drift` sections of a config file."""
        unknown = set(data) - set(cls.model_fields)
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected {sorted(cls.model_fields)}")
        return validated(cls, data, source)


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping, with errors that name the file."""
    path = Path(path)
    data = load_yaml(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections, got {type(data).__name__}")
    return data
