"""The workspace: the four pieces of configuration a pipeline needs, loaded once per flow run."""

from typing import Any

from pydantic import Field

from mlpipe.blocks.cluster import DaskCluster
from mlpipe.blocks.datastore import Datastore
from mlpipe.blocks.drift import DriftPolicy
from mlpipe.blocks.gate import GatePolicy
from mlpipe.blocks.mlflow import MlflowConnection
from mlpipe.blocks.study import StudyStorage
from mlpipe.errors import ConfigError, validated
from mlpipe.validation import Strict


class WorkspaceConfig(Strict):
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
