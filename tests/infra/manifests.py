"""The manifests in infra/ read as containers: image, command line, environment, ports.

The compose file and the Kubernetes manifests describe the same services in two shapes; both
are turned into `Container`s here, so that one set of checks (tests/infra/checks.py) asks of
each what the code expects. Compose's variable interpolation is applied the way `docker compose`
applies it, so a check sees what the container would get.
"""

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.source_tree import ROOT

INFRA = ROOT / "infra"
COMPOSE_FILE = Path("compose/docker-compose.yml")
COMPOSE_ENV_EXAMPLE = Path("compose/env.example")
KUBERNETES = Path("kubernetes")
MLPIPE_IMAGE = "mlpipe"
"""The image infra/Dockerfile builds; every Python service runs it."""

_VARIABLE = re.compile(r"\$(?:(?P<escaped>\$)|\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\})")


class InterpolationError(ValueError):
    """A required variable (`${NAME:?message}`) is unset, as `docker compose` would refuse it."""


@dataclass(frozen=True)
class SecretRef:
    """An environment value a Kubernetes container takes from a Secret."""

    name: str
    key: str


@dataclass
class Container:
    """One process the manifests start: where it is declared, its image, argv and environment.

    `env` holds what the manifest wrote (compose: the text before interpolation, so that a
    `${VAR:?…}` stays visible; Kubernetes: a literal or a `SecretRef`).
    """

    where: str
    image: str
    argv: list[str]
    env: dict[str, str | SecretRef] = field(default_factory=dict)
    mounts: list[str] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def runs_mlpipe_image(self) -> bool:
        return self.image.split(":")[0] == MLPIPE_IMAGE

    @property
    def program(self) -> str:
        """The tool and its command, e.g. `dask worker`, `mlflow server`."""
        return " ".join(self.argv[:2])


def interpolate(text: str, environment: dict[str, str]) -> str:
    """`text` with compose's `$$`, `${VAR}`, `${VAR:-default}`, `${VAR-default}`, `${VAR:?message}` applied."""

    def replace(match: re.Match[str]) -> str:
        if match["escaped"]:
            return "$"
        name, op, arg = match["name"], match["op"], match["arg"]
        value = environment.get(name)
        if (op == ":?" and not value) or (op == "?" and value is None):
            raise InterpolationError(f"{name}: {arg}")
        if op == ":-":
            return value or arg
        if op == "-":
            return arg if value is None else value
        return value or ""

    return _VARIABLE.sub(replace, text)


def variables(text: str) -> list[tuple[str, str | None]]:
    """Each `${NAME…}` in `text`: its name and operator (None for a plain `${NAME}`)."""
    return [(match["name"], match["op"]) for match in _VARIABLE.finditer(text) if match["name"]]


def env_example(infra: Path = INFRA) -> tuple[set[str], set[str]]:
    """The variables env.example asks for (`NAME=`) and those it offers as optional (`# NAME=`)."""
    required: set[str] = set()
    optional: set[str] = set()
    for line in (infra / COMPOSE_ENV_EXAMPLE).read_text().splitlines():
        if match := re.match(r"^(#\s*)?([A-Z][A-Z0-9_]*)=", line):
            (optional if match[1] else required).add(match[2])
    return required, optional


def compose_text(infra: Path = INFRA) -> str:
    return (infra / COMPOSE_FILE).read_text()


def compose_document(infra: Path = INFRA, environment: dict[str, str] | None = None) -> dict[str, Any]:
    """The compose file as `docker compose` reads it with `environment` (default: raw, not interpolated)."""
    text = compose_text(infra)
    if environment is not None:
        text = interpolate(text, environment)
    return yaml.safe_load(text)


def example_environment(infra: Path = INFRA) -> dict[str, str]:
    """Every variable env.example asks for set to a distinct placeholder, the optional ones unset."""
    required, _ = env_example(infra)
    return {name: f"value-of-{name.lower()}" for name in required}


def compose_containers(infra: Path = INFRA) -> list[Container]:
    """Each service of the compose file (not interpolated)."""
    services = compose_document(infra)["services"]
    containers = []
    for name, service in services.items():
        command = service.get("command", [])
        argv = [*service.get("entrypoint", []), *(command if isinstance(command, list) else command.split())]
        env: dict[str, str | SecretRef] = {key: str(value) for key, value in (service.get("environment") or {}).items()}
        mounts = [volume.split(":")[1] for volume in service.get("volumes", [])]
        containers.append(Container(f"{COMPOSE_FILE}: service {name}", service["image"], argv, env, mounts, service))
    return containers


def kubernetes_documents(infra: Path = INFRA) -> list[tuple[Path, dict[str, Any]]]:
    """Every resource of every YAML file in infra/kubernetes, with the file it came from."""
    documents = []
    for path in sorted((infra / KUBERNETES).glob("*.yaml")):
        documents += [(path.relative_to(infra), doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return documents


def pod_specs(document: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """The pod specs inside a resource, each with a label saying where: Deployment template, Dask pods."""
    kind, spec = document["kind"], document.get("spec", {})
    if kind not in ("Deployment", "DaskCluster", "DaskWorkerGroup"):
        return []
    name = document["metadata"]["name"]
    if kind == "Deployment":
        return [(f"Deployment {name}", spec["template"]["spec"])]
    if kind == "DaskCluster":
        return [
            (f"DaskCluster {name} scheduler", spec["scheduler"]["spec"]),
            (f"DaskCluster {name} worker", spec["worker"]["spec"]),
        ]
    if kind == "DaskWorkerGroup":
        return [(f"DaskWorkerGroup {name} worker", spec["worker"]["spec"])]
    return []


def config_maps(documents: list[tuple[Path, dict[str, Any]]]) -> dict[str, dict[str, str]]:
    return {doc["metadata"]["name"]: doc.get("data", {}) for _, doc in documents if doc["kind"] == "ConfigMap"}


def kubernetes_containers(infra: Path = INFRA) -> list[Container]:
    """Each container of each pod spec, with the ConfigMaps it reads through `envFrom` expanded."""
    documents = kubernetes_documents(infra)
    maps = config_maps(documents)
    containers = []
    for path, document in documents:
        for where, spec in pod_specs(document):
            for container in spec.get("containers", []):
                env: dict[str, str | SecretRef] = {}
                for source in container.get("envFrom", []):
                    env.update(maps.get(source.get("configMapRef", {}).get("name"), {}))
                for variable in container.get("env", []):
                    ref = variable.get("valueFrom", {}).get("secretKeyRef")
                    env[variable["name"]] = (
                        SecretRef(ref["name"], ref["key"]) if ref else str(variable.get("value", ""))
                    )
                mounts = [mount["mountPath"] for mount in container.get("volumeMounts", [])]
                argv = [*container.get("command", []), *container.get("args", [])]
                label = f"{path}: {where}, container {container['name']}"
                containers.append(Container(label, container["image"], argv, env, mounts, container))
    return containers
