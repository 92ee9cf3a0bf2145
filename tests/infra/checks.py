"""What the manifests in infra/ must agree on with the code, as checks that list the problems found.

Each check returns a list of messages naming the file, the service or container, and what was
expected; tests/infra/test_manifests.py asserts the lists are empty for the real manifests and
that each check reports a deliberately broken copy. What a check expects is taken from the code
and the installed packages (the CLIs' own parsers, Prefect's settings, MLflow's environment
variables, the installed versions), so the two cannot drift apart unnoticed.
"""

import importlib.metadata
import re
import sys
import tomllib
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import click
import jsonschema
import yaml

from mlpipe.infra.serving.settings import API_KEYS
from mlpipe.workspace import GPU_RESOURCE
from tests.infra.manifests import (
    COMPOSE_ENV_EXAMPLE,
    COMPOSE_FILE,
    INFRA,
    KUBERNETES,
    MLPIPE_IMAGE,
    Container,
    InterpolationError,
    SecretRef,
    compose_document,
    compose_text,
    env_example,
    example_environment,
    interpolate,
    kubernetes_containers,
    kubernetes_documents,
    pod_specs,
    variables,
)
from tests.source_tree import ROOT, package_dirs

KUBERNETES_VERSION = "1.30"
"""The oldest Kubernetes the manifests are checked against (strict schemas: unknown fields are errors)."""
DASK_COMM_PORT = 8786
"""`dask scheduler`'s port when none is given (distributed's CLI has it inline, not as an option default)."""
SECRET_NAME = re.compile(
    r"PASSWORD|SECRET|AUTH_STRING|TOKEN|ACCESS_KEY|API_KEYS|DATABASE_CONNECTION_URL|BACKEND_STORE_URI"
)
"""Environment variables whose value is, or holds, a credential."""
KNOWN_DEFAULT_CREDENTIALS = ("password1234", "minioadmin")
"""MLflow's former basic-auth admin password and MinIO's default root login: public, never acceptable."""
THIRD_PARTY = {
    # Image → the environment variables it documents and the ports it listens on by default.
    "postgres": ({"POSTGRES_USER", "POSTGRES_PASSWORD", "POSTGRES_DB"}, {"api": 5432}),
    "minio/minio": ({"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD"}, {"api": 9000}),
    "minio/mc": (set(), {}),
}
OTHER_LIBRARIES_VARIABLES = {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
"""Read by boto3, which MLflow's S3 artifact store uses."""
CLIENT_VARIABLES = (
    "PREFECT_API_URL",
    "PREFECT_API_AUTH_STRING",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_TRACKING_USERNAME",
    "MLFLOW_TRACKING_PASSWORD",
    "MLPIPE_HOME",
)
"""What every process that runs pipeline code needs to reach the servers and the shared workspace."""
OBJECT_STORE_SCHEMES = ("s3", "gs", "gcs", "abfs", "az", "file")
"""URLs whose host part is a bucket, not a service."""
URL_ROLES = {
    "PREFECT_API_URL": ("prefect server", "api"),
    "MLFLOW_TRACKING_URI": ("mlflow server", "api"),
    "DASK_SCHEDULER_ADDRESS": ("dask scheduler", "comm"),
}
"""Which server (and which of its ports) a client variable must point at."""


# --- what the code and the installed tools expect -------------------------------------------------


@cache
def code_variables() -> frozenset[str]:
    """Environment variable names mlpipe's own source mentions (MLPIPE_*, MLFLOW_*, DASK_*, PREFECT_*)."""
    pattern = re.compile(r"[\"']((?:MLPIPE|MLFLOW|DASK|PREFECT)_[A-Z0-9_]+)[\"']")
    names: set[str] = set()
    for folder in package_dirs().values():
        for path in folder.rglob("*.py"):
            names.update(pattern.findall(path.read_text()))
    return frozenset(names)


@cache
def tool_variables() -> frozenset[str]:
    """Every setting Prefect reads from the environment and every variable MLflow defines."""
    import mlflow.environment_variables as mlflow_variables
    from prefect.settings import Settings
    from prefect.settings.legacy import _get_valid_setting_names

    mlflow_names = {
        value.name
        for value in vars(mlflow_variables).values()
        if isinstance(value, mlflow_variables._EnvironmentVariable)
    }
    return frozenset(_get_valid_setting_names(Settings)) | frozenset(mlflow_names)


def known_variables(container: Container) -> set[str]:
    """The variables something in `container`'s image reads."""
    if container.runs_mlpipe_image:
        return set(code_variables() | tool_variables() | OTHER_LIBRARIES_VARIABLES) | option_variables(container.argv)
    return set(THIRD_PARTY[image_name(container)][0]) | script_variables(container)


def script_variables(container: Container) -> set[str]:
    """The variables a container's shell command reads (`$$NAME` in compose, `$NAME` once interpolated)."""
    return set(re.findall(r"\$\$\{?([A-Z_][A-Z0-9_]*)", " ".join(container.argv)))


def image_name(container: Container) -> str:
    return container.image.rpartition(":")[0] if ":" in container.image else container.image


def parse_command(argv: list[str]) -> dict[str, Any]:
    """The parameters `argv` gives its tool, as the tool's own command-line parser reads them (raises if it refuses)."""
    if len(argv) < 2:
        raise ValueError(f"expected a tool and its command, got {argv}")
    program, command, *args = argv
    if program == "prefect" and command == "server":
        from prefect.cli.server import server_app

        _, bound, _ = server_app.parse_args(list(args), exit_on_error=False, print_error=False)
        return dict(bound.arguments)
    return dict(click_command(program, command).make_context(command, list(args)).params)


def click_command(program: str, command: str) -> click.Command:
    """The click command behind `program command` (mlpipe's typer app, MLflow's and Dask's CLIs)."""
    if program == "mlpipe":
        import typer

        from mlpipe.cli import app

        return typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    if program == "mlflow":
        from mlflow.cli import cli

        return cli.commands[command]
    if program == "dask":
        from distributed.cli import dask_scheduler, dask_worker

        return {"scheduler": dask_scheduler.main, "worker": dask_worker.main}[command]
    raise ValueError(f"no parser for {program} {command}")


def option_variables(argv: list[str]) -> set[str]:
    """The variables a command's own options read (`mlflow server --backend-store-uri` ← MLFLOW_BACKEND_STORE_URI)."""
    if len(argv) < 2 or argv[0] == "prefect":  # Prefect's options read its settings, counted in tool_variables
        return set()
    params = click_command(argv[0], argv[1]).params
    return {
        name for param in params for name in ([param.envvar] if isinstance(param.envvar, str) else param.envvar or [])
    }


def listening_ports(container: Container) -> dict[str, int]:
    """The ports the container's server listens on, by role: api, comm, dashboard, console."""
    if not container.runs_mlpipe_image:
        ports = dict(THIRD_PARTY[image_name(container)][1])
        if "--console-address" in container.argv:
            ports["console"] = int(container.argv[container.argv.index("--console-address") + 1].rpartition(":")[2])
        return ports
    params = parse_command(container.argv)
    if container.program in ("prefect server", "mlflow server", "mlpipe serve"):
        return {"api": int(params["port"])}
    if container.program == "dask scheduler":
        return {
            "comm": int(params["port"] or DASK_COMM_PORT),
            "dashboard": int(params["dashboard_address"].rpartition(":")[2]),
        }
    return {}


def tool_default_ports() -> dict[str, dict[str, int]]:
    """The ports each server listens on when not told otherwise: what users, docs and `mlpipe up` assume."""
    from distributed.cli import dask_scheduler
    from mlflow.cli import cli
    from prefect.settings import get_current_settings

    mlflow_port = next(p.default for p in cli.commands["server"].params if p.name == "port")
    dashboard = next(p.default for p in dask_scheduler.main.params if p.name == "dashboard_address")
    return {
        "prefect server": {"api": get_current_settings().server.api.port},
        "mlflow server": {"api": int(mlflow_port)},  # type: ignore[arg-type]
        "dask scheduler": {"comm": DASK_COMM_PORT, "dashboard": int(str(dashboard).rpartition(":")[2])},
    }


def source_of(value: str | SecretRef) -> object:
    """Where a value comes from: its Secret, its compose variables, or the literal itself."""
    if isinstance(value, SecretRef):
        return value
    names = tuple(name for name, _ in variables(value))
    return names or value


# --- the checks -----------------------------------------------------------------------------------


def compose_schema_problems(infra: Path = INFRA) -> list[str]:
    """The compose file, interpolated as `docker compose` would, against the compose specification.

    Twice: the specification's JSON schema (the copy check-jsonschema ships) checks every key and
    its type; the compose-spec parser also reads what the schema leaves as free text (port
    ranges, durations, device counts).
    """
    from compose_spec import PyOptions

    try:
        text = interpolate(compose_text(infra), example_environment(infra))
    except InterpolationError as error:
        return [f"{COMPOSE_FILE}: {error}"]
    schema = compose_json_schema()
    validator = jsonschema.validators.validator_for(schema)(schema)
    errors = sorted(validator.iter_errors(yaml.safe_load(text)), key=lambda error: error.json_path)
    problems = [f"{COMPOSE_FILE}: {error.json_path}: {error.message}" for error in errors]
    try:
        PyOptions(apply_merge=True).from_yaml(text).validate()
    except ValueError as error:
        problems.append(f"{COMPOSE_FILE}: {error}")
    services = compose_document(infra)["services"]
    return problems + [
        f"{COMPOSE_FILE}: service {name} depends on unknown service {needed}"
        for name, service in services.items()
        for needed in service.get("depends_on", {})
        if needed not in services
    ]


@cache
def compose_json_schema() -> dict[str, Any]:
    """The compose specification's JSON schema, as vendored by check-jsonschema (no network)."""
    import importlib.resources
    import json

    vendored = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendored.joinpath("compose-spec.json").read_text())  # type: ignore[no-any-return]


def variable_problems(infra: Path = INFRA) -> list[str]:
    """Every required variable is in env.example and nothing else is; no credential has a default."""
    found = variables(compose_text(infra))
    required = {name for name, op in found if op in (":?", "?")}
    defaulted = {name for name, op in found if op in (":-", "-")}
    listed, optional = env_example(infra)
    problems = [f"{COMPOSE_FILE}: ${{{name}}} must be required (:?) or have a default" for name, op in found if not op]
    problems += [f"{COMPOSE_ENV_EXAMPLE}: lacks the required variable {name}" for name in sorted(required - listed)]
    problems += [
        f"{COMPOSE_ENV_EXAMPLE}: {name} is not required by the compose file" for name in sorted(listed - required)
    ]
    problems += [f"{COMPOSE_ENV_EXAMPLE}: lacks the optional variable {name}" for name in sorted(defaulted - optional)]
    problems += [
        f"{COMPOSE_FILE}: credential {name} has a default" for name in sorted(defaulted) if SECRET_NAME.search(name)
    ]
    return problems


def kubernetes_schema_problems(infra: Path = INFRA) -> list[str]:
    """Each resource against Kubernetes' schemas (the Dask operator's against DASK_SCHEMAS, its pods against Pod's)."""
    import kubernetes_validate

    problems = []
    files = {path.name for path in (infra / KUBERNETES).glob("*.yaml")} - {"kustomization.yaml"}
    documents = kubernetes_documents(infra)
    clusters = {document["metadata"]["name"] for _, document in documents if document["kind"] == "DaskCluster"}
    for path, document in documents:
        if document.get("kind") == "Kustomization":
            listed = set(document.get("resources", []))
            problems += [f"{path}: lists {name}, which does not exist" for name in sorted(listed - files)]
            problems += [f"{path}: does not list {name}" for name in sorted(files - listed)]
            continue
        candidates = [document]
        if document["kind"] == "DaskWorkerGroup" and document["spec"].get("cluster") not in clusters:
            problems.append(
                f"{path}: DaskWorkerGroup {document['metadata']['name']} names no DaskCluster of these manifests"
            )
        if document["kind"] in DASK_SCHEMAS:
            problems += [f"{path}: {error.json_path}: {error.message}" for error in _dask_errors(document)]
            candidates = [_pod(spec) for _, spec in pod_specs(document)]
            service = document["spec"].get("scheduler", {}).get("service")
            candidates += (
                [{"apiVersion": "v1", "kind": "Service", "metadata": {"name": "x"}, "spec": service}] if service else []
            )
        for candidate in candidates:
            try:
                kubernetes_validate.validate(candidate, KUBERNETES_VERSION, strict=True)
            except kubernetes_validate.ValidationError as error:
                where = ".".join(str(part) for part in error.path)
                problems.append(f"{path}: {document['kind']} {document['metadata']['name']}: {where}: {error.message}")
            except kubernetes_validate.SchemaNotFoundError as error:
                problems.append(f"{path}: {error.message}")
    return problems


def command_problems(containers: Iterable[Container]) -> list[str]:
    """Each command is an installed entry point and its tool's parser accepts the arguments."""
    scripts = {entry.name for entry in importlib.metadata.entry_points(group="console_scripts")}
    problems = []
    for container in containers:
        if not container.runs_mlpipe_image:
            continue
        if not container.argv or container.argv[0] not in scripts:
            problems.append(f"{container.where}: {container.argv[:1]} is not an installed command")
            continue
        try:
            parse_command(container.argv)
        except Exception as error:  # noqa: BLE001  # each CLI raises its own kind of usage error
            problems.append(f"{container.where}: `{' '.join(container.argv)}` is refused: {error}")
    return problems


def environment_problems(containers: Iterable[Container]) -> list[str]:
    """Each variable is one something in the image reads; pipeline processes have what they need."""
    problems = []
    for container in containers:
        for name in sorted(set(container.env) - known_variables(container)):
            problems.append(f"{container.where}: nothing in image {container.image} reads {name}")
        for name in sorted(script_variables(container) - set(container.env)):
            problems.append(f"{container.where}: its command reads {name}, which is not set")
        if container.program in ("mlpipe worker", "dask worker"):
            problems += [f"{container.where}: lacks {name}" for name in CLIENT_VARIABLES if name not in container.env]
            home = container.env.get("MLPIPE_HOME")
            if home is not None and home not in container.mounts:
                problems.append(f"{container.where}: MLPIPE_HOME {home} is not a shared volume")
        if container.program == "mlpipe worker" and "DASK_SCHEDULER_ADDRESS" not in container.env:
            problems.append(
                f"{container.where}: lacks DASK_SCHEDULER_ADDRESS, so flow runs would start a local cluster"
            )
        scheduler = parse_command(container.argv)["scheduler"] if container.program == "dask worker" else "-"
        if not (scheduler or container.env.get("DASK_SCHEDULER_ADDRESS")):
            problems.append(f"{container.where}: names no scheduler")
    return problems


def pool_problems(containers: Iterable[Container]) -> list[str]:
    """`mlpipe worker` serves the work pool the deployments are registered on."""
    from mlpipe.deployments.deploy import WORK_POOL

    workers = [container for container in containers if container.program == "mlpipe worker"]
    problems = [] if workers else ["no container runs `mlpipe worker`"]
    for container in workers:
        pool = parse_command(container.argv)["pool"]
        if pool != WORK_POOL:
            problems.append(f"{container.where}: serves work pool {pool!r}; deployments use {WORK_POOL!r}")
    return problems


def auth_problems(containers: list[Container]) -> list[str]:
    """The servers require a login, and their clients log in with the same credentials."""
    problems = []
    servers = {
        container.program: container
        for container in containers
        if container.program in ("prefect server", "mlflow server")
    }
    clients = [container for container in containers if container.program in ("mlpipe worker", "dask worker")]
    pairs = []  # (server, server variable, client variable)
    if prefect := servers.get("prefect server"):
        pairs.append((prefect, "PREFECT_SERVER_API_AUTH_STRING", "PREFECT_API_AUTH_STRING"))
    if mlflow := servers.get("mlflow server"):
        if parse_command(mlflow.argv).get("app_name") != "basic-auth":
            problems.append(f"{mlflow.where}: mlflow server runs without --app-name basic-auth")
        if "MLFLOW_FLASK_SERVER_SECRET_KEY" not in mlflow.env:
            problems.append(f"{mlflow.where}: the basic-auth app needs MLFLOW_FLASK_SERVER_SECRET_KEY")
        pairs.append((mlflow, "MLFLOW_AUTH_ADMIN_USERNAME", "MLFLOW_TRACKING_USERNAME"))
        pairs.append((mlflow, "MLFLOW_AUTH_ADMIN_PASSWORD", "MLFLOW_TRACKING_PASSWORD"))
    if len(servers) < 2:
        problems.append(f"expected a Prefect server and an MLflow server, found {sorted(servers)}")
    for server, server_variable, client_variable in pairs:
        if server_variable not in server.env:
            problems.append(f"{server.where}: {server_variable} is not set, so the server takes no login")
            continue
        expected = source_of(server.env[server_variable])
        for client in clients:
            if client_variable in client.env and source_of(client.env[client_variable]) != expected:
                problems.append(f"{client.where}: {client_variable} does not come from where {server_variable} does")
    return problems


def compose_secret_problems(infra: Path = INFRA) -> list[str]:
    """Credentials are required variables, never literals or defaults, also inside URLs."""
    problems = []
    text = compose_text(infra)
    problems += [
        f"{COMPOSE_FILE}: holds the known default credential {word!r}"
        for word in KNOWN_DEFAULT_CREDENTIALS
        if word in text
    ]
    for container in compose_containers_cached(infra):
        for name, value in container.env.items():
            assert isinstance(value, str)
            required = [n for n, op in variables(value) if op in (":?", "?")]
            if SECRET_NAME.search(name) and not required:
                problems.append(f"{container.where}: {name} is not a required variable")
            userinfo = re.match(r"^[a-z][a-z0-9+.-]*://[^/@:]*:([^@]+)@", value)
            if userinfo and not re.fullmatch(r"\$\{[A-Z0-9_]+:\?[^}]*\}", userinfo[1]):
                problems.append(f"{container.where}: {name} holds a literal password")
    return problems


def kubernetes_secret_problems(infra: Path = INFRA) -> list[str]:
    """Credentials come from Secrets the manifests reference, never define, and the README tells how to create."""
    problems = []
    readme = (infra / "README.md").read_text()
    for path, document in kubernetes_documents(infra):
        if document["kind"] == "Secret":
            problems.append(
                f"{path}: defines Secret {document['metadata']['name']}; reference one the operator creates"
            )
        text = str(document)
        problems += [
            f"{path}: holds the known default credential {word!r}" for word in KNOWN_DEFAULT_CREDENTIALS if word in text
        ]
    for container in kubernetes_containers(infra):
        for name, value in container.env.items():
            if SECRET_NAME.search(name) and not isinstance(value, SecretRef):
                problems.append(f"{container.where}: {name} is not taken from a Secret")
            if not isinstance(value, SecretRef):
                continue
            command = rf"create secret generic {re.escape(value.name)}\b[^\n]*(\\\n[^\n]*)*"
            if not re.search(rf"{command}--from-literal={re.escape(value.key)}=", readme):
                problems.append(
                    f"{container.where}: infra/README.md does not tell how to create {value.name}/{value.key}"
                )
    return problems


def artifact_store_problems(infra: Path = INFRA) -> list[str]:
    """The bucket and key the store's init creates are the ones the MLflow server writes with."""
    containers = {container.where.rpartition(" ")[2]: container for container in compose_containers_cached(infra)}
    mlflow = next((c for c in containers.values() if c.program == "mlflow server"), None)
    init = next((c for c in containers.values() if "mc mb" in " ".join(c.argv)), None)
    if mlflow is None or init is None:
        return [f"{COMPOSE_FILE}: expected an MLflow server and a service that creates its bucket"]
    problems = []
    destination = urlsplit(str(mlflow.env.get("MLFLOW_ARTIFACTS_DESTINATION", "")))
    if destination.netloc != init.env.get("ARTIFACT_BUCKET"):
        problems.append(
            f"{init.where}: creates bucket {init.env.get('ARTIFACT_BUCKET')}, MLflow writes to {destination.netloc}"
        )
    for server_variable, init_variable in (
        ("AWS_ACCESS_KEY_ID", "ARTIFACT_ACCESS_KEY"),
        ("AWS_SECRET_ACCESS_KEY", "ARTIFACT_SECRET_KEY"),
    ):
        if source_of(mlflow.env.get(server_variable, "")) != source_of(init.env.get(init_variable, "-")):
            problems.append(f"{mlflow.where}: {server_variable} is not the key {init.where} creates ({init_variable})")
    return problems


def compose_port_problems(infra: Path = INFRA) -> list[str]:
    """Servers listen on the tools' default ports, clients use them; only loopback is published, never Dask's comm."""
    environment = example_environment(infra)
    services = compose_document(infra, environment)["services"]
    containers = {container.where.rpartition(" ")[2]: container for container in compose_containers_cached(infra)}
    listening = {name: listening_ports(container) for name, container in containers.items()}
    programs = {name: container.program for name, container in containers.items()}
    problems = _default_port_problems(containers.values(), listening.values())
    for name, service in services.items():
        where = f"{COMPOSE_FILE}: service {name}"
        for port in service.get("ports", []):
            host, _, target = _published(port)
            if host != "127.0.0.1":
                problems.append(f"{where}: publishes {port} beyond 127.0.0.1")
            if int(target) not in listening[name].values():
                problems.append(f"{where}: publishes {target}, where nothing listens (it listens on {listening[name]})")
            if int(target) == listening[name].get("comm"):
                problems.append(f"{where}: publishes the Dask scheduler's port, which runs any code it is sent")
        for variable, value in (service.get("environment") or {}).items():
            problems += _url_problems(where, variable, str(value), listening, programs)
        if programs[name] == "dask worker":
            problems += _url_problems(
                where,
                "DASK_SCHEDULER_ADDRESS",
                parse_command(containers[name].argv)["scheduler"] or "",
                listening,
                programs,
            )
        for url in re.findall(r"https?://[^\s'\"]+", " ".join(service.get("healthcheck", {}).get("test", []))):
            if urlsplit(url).port not in listening[name].values():
                problems.append(f"{where}: the health check calls {url}, where the service does not listen")
        if ui := (service.get("environment") or {}).get("PREFECT_UI_API_URL"):
            addresses = [_published(port)[1] for port in service.get("ports", [])]
            if str(urlsplit(ui).port) not in addresses or urlsplit(ui).hostname != "127.0.0.1":
                problems.append(f"{where}: PREFECT_UI_API_URL {ui} is not the published address {addresses}")
    return problems


def kubernetes_port_problems(infra: Path = INFRA) -> list[str]:
    """Each Service reaches a container port its server listens on; each client URL reaches the right server."""
    documents = [document for _, document in kubernetes_documents(infra)]
    by_where = {container.where: container for container in kubernetes_containers(infra)}
    services = _kubernetes_services(documents, infra)
    problems = _default_port_problems(by_where.values(), [listening_ports(c) for c in by_where.values()])
    listening: dict[str, dict[str, int]] = {}
    programs: dict[str, str] = {}
    for name, (ports, containers) in services.items():
        if not containers:
            problems.append(f"{KUBERNETES}: Service {name} selects no pod")
            continue
        container = containers[0]
        declared = {p.get("name"): p["containerPort"] for p in container.raw.get("ports", [])}
        server_ports = listening_ports(container)
        listening[name], programs[name] = {}, container.program
        for port in ports:
            target = port.get("targetPort", port["port"])
            number = declared.get(target) if isinstance(target, str) else target
            if number not in server_ports.values():
                problems.append(
                    f"{KUBERNETES}: Service {name} port {port['port']} → {target}: not a port of {server_ports}"
                )
                continue
            role = next(role for role, value in server_ports.items() if value == number)
            listening[name][role] = port["port"]
    for container in by_where.values():
        declared = {p.get("name"): p["containerPort"] for p in container.raw.get("ports", [])}
        for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
            port = container.raw.get(probe, {}).get("httpGet", {}).get("port")
            number = declared.get(port) if isinstance(port, str) else port
            if port is not None and number not in listening_ports(container).values():
                problems.append(f"{container.where}: the {probe} calls port {port}, where the server does not listen")
        for variable, value in container.env.items():
            if isinstance(value, str):
                problems += _url_problems(container.where, variable, value, listening, programs)
    return problems


def compose_serving_problems(infra: Path = INFRA) -> list[str]:
    """The endpoint is healthy only once ready (`/ready`), gets time to drain, and requires API keys."""
    from mlpipe.infra.serving.settings import READY_PATH

    problems = []
    services = compose_document(infra, example_environment(infra))["services"]
    endpoints = [c for c in compose_containers_cached(infra) if c.program == "mlpipe serve"]
    for container in endpoints:
        service = services[container.where.rpartition(" ")[2]]
        port = listening_ports(container)["api"]
        urls = re.findall(r"https?://[^\s'\"]+", " ".join(service.get("healthcheck", {}).get("test", [])))
        if [urlsplit(url)[1:3] for url in urls] != [(f"127.0.0.1:{port}", READY_PATH)]:
            problems.append(f"{container.where}: the health check must call {READY_PATH} on port {port}, calls {urls}")
        if "stop_grace_period" not in service:
            problems.append(f"{container.where}: no stop_grace_period, so in-flight requests are cut on stop")
        problems += _endpoint_key_problems(container)
    return problems or ([] if endpoints else [f"{COMPOSE_FILE}: no service runs `mlpipe serve`"])


def kubernetes_serving_problems(infra: Path = INFRA) -> list[str]:
    """Readiness on `/ready`, liveness on `/health`, a grace period to drain, keys from a Secret, a Service."""
    from mlpipe.infra.serving.settings import HEALTH_PATH, READY_PATH

    problems = []
    documents = kubernetes_documents(infra)
    services = _kubernetes_services([document for _, document in documents], infra)
    reached = {container.where for _, containers in services.values() for container in containers}
    grace = {where: spec.get("terminationGracePeriodSeconds") for _, doc in documents for where, spec in pod_specs(doc)}
    endpoints = [c for c in kubernetes_containers(infra) if c.program == "mlpipe serve"]
    for container in endpoints:
        for probe, path in (("readinessProbe", READY_PATH), ("livenessProbe", HEALTH_PATH)):
            found = container.raw.get(probe, {}).get("httpGet", {}).get("path")
            if found != path:
                problems.append(f"{container.where}: the {probe} must call {path}, calls {found}")
        if not grace.get(container.where.split(": ")[1].rpartition(",")[0]):
            problems.append(f"{container.where}: no terminationGracePeriodSeconds, so in-flight requests are cut")
        if container.where not in reached:
            problems.append(f"{container.where}: no Service reaches it")
        if isinstance(container.env.get(API_KEYS), str):
            problems.append(f"{container.where}: {API_KEYS} is not taken from a Secret")
        problems += _endpoint_key_problems(container)
    return problems or ([] if endpoints else [f"{KUBERNETES}: no container runs `mlpipe serve`"])


def _endpoint_key_problems(container: Container) -> list[str]:
    """Beyond loopback the endpoint refuses to start without keys (as `mlpipe up --serve` does)."""
    params = parse_command(container.argv)
    if params.get("no_auth"):
        return [f"{container.where}: serves with --no-auth on {params.get('host')}, beyond loopback"]
    if API_KEYS not in container.env and not params.get("api_keys_secret"):
        return [f"{container.where}: has neither {API_KEYS} nor --api-keys-secret, so it refuses to start"]
    return []


def gpu_problems(containers: list[Container], requests_gpu: Any) -> list[str]:
    """A worker advertises the GPU resource if and only if it is given a GPU; at least one is."""
    problems = []
    workers = [container for container in containers if container.program == "dask worker"]
    gpu_workers = 0
    for container in workers:
        resources = parse_command(container.argv)["resources"] or ""
        advertised = dict(pair.split("=") for pair in resources.replace(",", " ").split()) if resources else {}
        has_gpu = requests_gpu(container)
        gpu_workers += has_gpu
        if has_gpu and advertised.get(GPU_RESOURCE) != "1":
            problems.append(f"{container.where}: has a GPU but does not advertise --resources {GPU_RESOURCE}=1")
        if not has_gpu and GPU_RESOURCE in advertised:
            problems.append(f"{container.where}: advertises {GPU_RESOURCE} without being given a GPU")
    if not gpu_workers:
        problems.append("no Dask worker is given a GPU")
    return problems


def compose_requests_gpu(container: Container) -> bool:
    devices = container.raw.get("deploy", {}).get("resources", {}).get("reservations", {}).get("devices", [])
    return any(device.get("driver") == "nvidia" and "gpu" in device.get("capabilities", []) for device in devices)


def kubernetes_requests_gpu(container: Container) -> bool:
    return int(container.raw.get("resources", {}).get("limits", {}).get("nvidia.com/gpu", 0)) >= 1


def image_problems(infra: Path = INFRA) -> list[str]:
    """The image pins the versions installed here; tags are pinned; the image has what the servers need."""
    problems = []
    version = importlib.metadata.version("mlpipe")
    for line in (infra / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, pinned = line.partition("==")
            installed = importlib.metadata.version(name)
            if pinned != installed:
                problems.append(f"infra/constraints.txt: {name}=={pinned}, but {installed} is installed and tested")
    dockerfile = (infra / "Dockerfile").read_text()
    python = f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"
    if not re.search(rf"^FROM {re.escape(python)}\s*$", dockerfile, re.MULTILINE):
        problems.append(f"infra/Dockerfile: expected FROM {python}, the Python the tests run on")
    for folder in sorted({path.relative_to(ROOT).parts[0] for path in package_dirs().values()}):
        if not re.search(rf"^COPY {folder} \./{folder}$", dockerfile, re.MULTILINE):
            problems.append(f"infra/Dockerfile: does not copy {folder}/, part of the installed package")
    if not re.search(r"pip install --constraint infra/constraints.txt \"\.\[cluster\]\"", dockerfile):
        problems.append("infra/Dockerfile: does not install mlpipe[cluster] with infra/constraints.txt")
    containers = compose_containers_cached(infra) + kubernetes_containers(infra)
    for container in containers:
        name, _, tag = container.image.partition(":")
        if container.where.startswith(str(COMPOSE_FILE)) and name == MLPIPE_IMAGE and tag != version:
            problems.append(f"{container.where}: image {container.image}, expected {MLPIPE_IMAGE}:{version}")
        if name != MLPIPE_IMAGE and (not tag or tag == "latest"):
            problems.append(f"{container.where}: image {container.image} has no pinned tag")
    kustomization = next(doc for _, doc in kubernetes_documents(infra) if doc["kind"] == "Kustomization")
    tags = {image["name"]: str(image.get("newTag")) for image in kustomization.get("images", [])}
    if tags.get(MLPIPE_IMAGE) != version:
        problems.append(
            f"{KUBERNETES}/kustomization.yaml: image {MLPIPE_IMAGE} tag {tags.get(MLPIPE_IMAGE)}, expected {version}"
        )
    problems += _extra_problems(containers)
    return problems


# --- helpers ---------------------------------------------------------------------------------------


@cache
def _compose_containers(infra: Path, text: str) -> tuple[Container, ...]:
    from tests.infra.manifests import compose_containers

    return tuple(compose_containers(infra))


def compose_containers_cached(infra: Path = INFRA) -> list[Container]:
    return list(_compose_containers(infra, compose_text(infra)))


def _published(port: str | dict[str, Any]) -> tuple[str, str, str]:
    """A compose port, short (`[HOST:][PUBLISHED:]TARGET`) or long syntax, as host, published port, target."""
    if isinstance(port, dict):
        return str(port.get("host_ip", "0.0.0.0")), str(port.get("published", "")), str(port["target"])
    parts = str(port).rsplit(":", 2)
    host = parts[0] if len(parts) == 3 else "0.0.0.0"
    return host, parts[-2] if len(parts) > 1 else "", parts[-1]


def _default_port_problems(containers: Iterable[Container], ports: Iterable[dict[str, int]]) -> list[str]:
    defaults = tool_default_ports()
    problems = []
    for container, listening in zip(containers, ports, strict=True):
        for role, expected in defaults.get(container.program, {}).items():
            if listening.get(role) != expected:
                problems.append(
                    f"{container.where}: {container.program} {role} port {listening.get(role)}, expected {expected}"
                )
    return problems


def _url_problems(
    where: str, variable: str, value: str, listening: dict[str, dict[str, int]], programs: dict[str, str]
) -> list[str]:
    """A URL naming a service must use a port it listens on; a client variable must reach the right server."""
    if "://" not in value or value.split("://")[0] in OBJECT_STORE_SCHEMES:
        return []
    url = urlsplit(value)
    host = (url.hostname or "").split(".")[0]
    role = URL_ROLES.get(variable)
    if host not in listening:
        return [f"{where}: {variable} names {url.hostname}, which is not a service here"] if role else []
    if url.port not in listening[host].values():
        return [f"{where}: {variable} uses port {url.port} of {host}, which listens on {listening[host]}"]
    if role and (programs[host], listening[host].get(role[1])) != (role[0], url.port):
        return [f"{where}: {variable} must reach the {role[0]}'s {role[1]} port, not {host}:{url.port}"]
    return []


def _kubernetes_services(
    documents: list[dict[str, Any]], infra: Path
) -> dict[str, tuple[list[dict[str, Any]], list[Container]]]:
    """Service name → its ports and the containers of the pods it selects (with the Dask operator's scheduler)."""
    containers = kubernetes_containers(infra)
    services: dict[str, tuple[list[dict[str, Any]], list[Container]]] = {}
    for document in documents:
        name = document.get("metadata", {}).get("name")
        if document["kind"] == "Service":
            selector = document["spec"].get("selector", {})
            selected = [
                container
                for source in documents
                if source["kind"] == "Deployment"
                and selector.items() <= source["spec"]["template"]["metadata"].get("labels", {}).items()
                for container in containers
                if container.where.split(": ")[1].startswith(f"Deployment {source['metadata']['name']},")
            ]
            services[name] = (document["spec"]["ports"], selected)
        if document["kind"] == "DaskCluster":
            scheduler = [c for c in containers if f"DaskCluster {name} scheduler," in c.where]
            services[f"{name}-scheduler"] = (document["spec"]["scheduler"]["service"]["ports"], scheduler)
    return services


def _extra_problems(containers: list[Container]) -> list[str]:
    """The image's packages (mlpipe's dependencies and its `cluster` extra) hold what the servers' settings need."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    installed = project["dependencies"] + project["optional-dependencies"].get("cluster", [])
    names = {re.split(r"[<>=!~; ]", requirement)[0].lower() for requirement in installed}
    needed = set()
    for container in containers:
        if container.program == "mlflow server":
            if parse_command(container.argv).get("app_name") == "basic-auth":
                needed.add("mlflow[auth]")
            store = str(container.env.get("MLFLOW_BACKEND_STORE_URI", ""))
            if isinstance(container.env.get("MLFLOW_BACKEND_STORE_URI"), SecretRef) or store.startswith("postgresql"):
                needed.add("psycopg2-binary")
            if str(container.env.get("MLFLOW_ARTIFACTS_DESTINATION", "")).startswith("s3://"):
                needed.add("boto3")
    return [
        f"pyproject.toml: no dependency or cluster extra has {name}, which the MLflow server's settings need"
        for name in sorted(needed - names)
    ]


def _pod(spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "x"}, "spec": spec}


def _dask_errors(document: dict[str, Any]) -> list[jsonschema.ValidationError]:
    validator = jsonschema.Draft202012Validator(DASK_SCHEMAS[document["kind"]])
    return sorted(validator.iter_errors(document), key=lambda error: error.json_path)


_OBJECT: dict[str, Any] = {"type": "object"}
_METADATA = {"type": "object", "required": ["name"], "properties": {"name": {"type": "string"}}}
_WORKER = {
    "type": "object",
    "required": ["spec"],
    "additionalProperties": False,
    "properties": {"replicas": {"type": "integer", "minimum": 0}, "spec": _OBJECT},
}
DASK_SCHEMAS: dict[str, dict[str, Any]] = {
    # The parts of the Dask operator's CRDs (kubernetes.dask.org/v1) these manifests use; the pod
    # and service specs inside are checked against Kubernetes' own schemas.
    "DaskCluster": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "kubernetes.dask.org/v1"},
            "kind": {"const": "DaskCluster"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["worker", "scheduler"],
                "additionalProperties": False,
                "properties": {
                    "worker": _WORKER,
                    "scheduler": {
                        "type": "object",
                        "required": ["spec", "service"],
                        "additionalProperties": False,
                        "properties": {"spec": _OBJECT, "service": _OBJECT},
                    },
                    "idleTimeout": {"type": "integer"},
                },
            },
        },
    },
    "DaskWorkerGroup": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"const": "kubernetes.dask.org/v1"},
            "kind": {"const": "DaskWorkerGroup"},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "required": ["cluster", "worker"],
                "additionalProperties": False,
                "properties": {"cluster": {"type": "string"}, "worker": _WORKER},
            },
        },
    },
}
