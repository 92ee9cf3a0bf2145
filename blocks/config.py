"""Configuration of one run: a config file's sections, overridden by command-line options, then the environment.

A config file holds workspace sections (`mlflow`, `datastore`, `cluster`, `gate`, `studies`,
`drift`: the blocks of `WorkspaceConfig`) and flow sections (`training`, `sweep`, `scoring`,
`monitoring`: one flow's parameters each). An option given on the command line wins over the
file; a value neither sets comes from the environment when the workspace is resolved
(`MLFLOW_TRACKING_URI`, `DASK_SCHEDULER_ADDRESS`, …) or from the block's local default.
"""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlpipe.blocks.workspace import WorkspaceConfig
from mlpipe.errors import ConfigError, load_yaml

FLOW_SECTIONS = frozenset({"training", "sweep", "scoring", "monitoring"})
"""Config file sections that hold a flow's parameters rather than workspace settings."""
COMMAND_LINE = "command line"


@dataclass(frozen=True)
class RunConfig:
    """A flow's parameters (still to be validated by the flow's model), its workspace, and where they came from."""

    params: dict[str, Any]
    workspace: WorkspaceConfig
    source: str


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a YAML config file into a mapping, with errors that name the file."""
    path = Path(path)
    data = load_yaml(path, "config file")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def workspace_sections(sections: dict[str, Any]) -> dict[str, Any]:
    """The sections of a config file that configure the workspace (not a flow)."""
    return {key: value for key, value in sections.items() if key not in FLOW_SECTIONS}


def run_config(
    path: Path | None,
    section: str | None = None,
    options: dict[str, Any] | None = None,
    nested: dict[str, dict[str, Any]] | None = None,
) -> RunConfig:
    """The file's `section` with the given options over it, and the workspace from the file's other sections.

    `options` set top-level parameters; `nested` set keys one level down (`model.params`,
    `study.pruner`, `split.seed`), leaving the file's other keys there alone. An option that
    is None was not given and leaves the file's value.

    Raises:
        ConfigError: the file is missing or malformed, or holds an unknown section (named).
    """
    sections = load_config_file(path) if path else {}
    source = str(path) if path else COMMAND_LINE
    params = dict(sections.get(section) or {}) if section else {}
    params.update({key: value for key, value in (options or {}).items() if value is not None})
    for name, values in (nested or {}).items():
        params[name] = _merged(dict(params.get(name) or {}), values)
    return RunConfig(params, WorkspaceConfig.from_mapping(workspace_sections(sections), source), source)


def _merged(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """`values` over `base`, one level down for mappings (`params`, `pruner`); None leaves a key alone."""
    for key, value in values.items():
        if isinstance(value, dict):
            base[key] = _merged(dict(base.get(key) or {}), value)
        elif value is not None:
            base[key] = value
    return base
