"""The manifests in infra/ agree with the code, and every check that says so fails on a broken copy.

Docker and Kubernetes are not available to the tests, so the manifests are read, not run: the
compose file against the compose specification, the Kubernetes resources against the API's
schemas, every command line through its tool's own parser, every variable against what the code
and the tools read, every URL against the port its server listens on.
"""

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.infra import checks
from tests.infra.manifests import COMPOSE_FILE, INFRA, Container, compose_containers, kubernetes_containers


def _serve_built() -> bool:
    """Whether this build has `mlpipe serve`, which the manifests run (its parser checks their command lines)."""
    import typer

    from mlpipe.cli import app

    return "serve" in typer.main.get_command(app).commands  # type: ignore[attr-defined]


pytestmark = [
    pytest.mark.unit,
    pytest.mark.skipif(not _serve_built(), reason="the manifests run `mlpipe serve`, which this build lacks"),
]


def every_container(infra: Path) -> list[Container]:
    return compose_containers(infra) + kubernetes_containers(infra)


CHECKS: dict[str, Callable[[Path], list[str]]] = {
    "compose schema": checks.compose_schema_problems,
    "compose variables": checks.variable_problems,
    "kubernetes schema": checks.kubernetes_schema_problems,
    "commands": lambda infra: checks.command_problems(every_container(infra)),
    "environment": lambda infra: checks.environment_problems(every_container(infra)),
    "work pool": lambda infra: checks.pool_problems(every_container(infra)),
    "compose auth": lambda infra: checks.auth_problems(compose_containers(infra)),
    "kubernetes auth": lambda infra: checks.auth_problems(kubernetes_containers(infra)),
    "compose secrets": checks.compose_secret_problems,
    "kubernetes secrets": checks.kubernetes_secret_problems,
    "compose artifact store": checks.artifact_store_problems,
    "compose ports": checks.compose_port_problems,
    "kubernetes ports": checks.kubernetes_port_problems,
    "compose gpu": lambda infra: checks.gpu_problems(compose_containers(infra), checks.compose_requests_gpu),
    "kubernetes gpu": lambda infra: checks.gpu_problems(kubernetes_containers(infra), checks.kubernetes_requests_gpu),
    "images": checks.image_problems,
    "compose serving": checks.compose_serving_problems,
    "kubernetes serving": checks.kubernetes_serving_problems,
}

COMPOSE = str(COMPOSE_FILE)
MLFLOW_PASSWORD_FROM_SECRET = """            - name: MLFLOW_TRACKING_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: mlpipe-mlflow
                  key: password
"""
BREAKAGES = [
    # (check, file under infra/, text, replaced by, a phrase the problem must contain)
    ("compose schema", COMPOSE, "condition: service_healthy", "condition: service_heathy", "service_heathy"),
    (
        "compose variables",
        COMPOSE,
        "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD}",
        "${MINIO_ROOT_PASSWORD:-x}",
        "MINIO_ROOT_PASSWORD has a default",
    ),
    (
        "compose variables",
        "compose/env.example",
        "MLFLOW_DB_PASSWORD=\n",
        "",
        "lacks the required variable MLFLOW_DB_PASSWORD",
    ),
    ("compose secrets", COMPOSE, "${MINIO_ROOT_PASSWORD:?set MINIO_ROOT_PASSWORD}", "minioadmin", "'minioadmin'"),
    (
        "compose secrets",
        COMPOSE,
        "mlflow:${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD}@",
        "mlflow:mlflow@",
        "literal password",
    ),
    ("kubernetes schema", "kubernetes/mlflow.yaml", "periodSeconds: 5", "periodSecond: 5", "periodSecond"),
    ("kubernetes schema", "kubernetes/dask-cluster.yaml", "replicas: 2", "replica: 2", "replica"),
    (
        "kubernetes schema",
        "kubernetes/kustomization.yaml",
        "  - network-policy.yaml\n",
        "",
        "does not list network-policy.yaml",
    ),
    ("commands", COMPOSE, "[mlpipe, worker, --pool, mlpipe]", "[mlpipe, wrker, --pool, mlpipe]", "wrker"),
    ("commands", "kubernetes/prefect-server.yaml", "--host, 0.0.0.0", "--hots, 0.0.0.0", "--hots"),
    (
        "environment",
        COMPOSE,
        "  MLPIPE_HOME: /var/lib/mlpipe\n",
        "  MLPIPE_HOMEDIR: /var/lib/mlpipe\n",
        "reads MLPIPE_HOMEDIR",
    ),
    (
        "environment",
        "kubernetes/prefect-worker.yaml",
        "            - name: mlpipe-home\n              mountPath",
        "            - name: mlpipe-home\n              mountPath: /tmp\n              subPath",
        "not a shared volume",
    ),
    ("work pool", "kubernetes/prefect-worker.yaml", "--pool, mlpipe]", "--pool, default]", "'default'"),
    ("compose auth", COMPOSE, "--app-name, basic-auth, ", "", "without --app-name basic-auth"),
    (
        "kubernetes auth",
        "kubernetes/prefect-server.yaml",
        "name: PREFECT_SERVER_API_AUTH_STRING",
        "name: PREFECT_SERVER_AUTH",
        "takes no login",
    ),
    (
        "kubernetes auth",
        "kubernetes/dask-cluster.yaml",
        "key: password",
        "key: flask-secret-key",
        "MLFLOW_TRACKING_PASSWORD does not come from",
    ),
    (
        "kubernetes secrets",
        "kubernetes/prefect-worker.yaml",
        MLFLOW_PASSWORD_FROM_SECRET,
        "            - name: MLFLOW_TRACKING_PASSWORD\n              value: hunter2\n",
        "not taken from a Secret",
    ),
    (
        "kubernetes secrets",
        "README.md",
        "--from-literal=flask-secret-key=",
        "--from-literal=flask-key=",
        "mlpipe-mlflow/flask-secret-key",
    ),
    (
        "compose artifact store",
        COMPOSE,
        "ARTIFACT_BUCKET: mlflow",
        "ARTIFACT_BUCKET: artifacts",
        "MLflow writes to mlflow",
    ),
    (
        "compose artifact store",
        COMPOSE,
        "AWS_SECRET_ACCESS_KEY: ${MLFLOW_S3_SECRET_KEY",
        "AWS_SECRET_ACCESS_KEY: ${MINIO_ROOT_PASSWORD",
        "AWS_SECRET_ACCESS_KEY is not the key",
    ),
    ("compose ports", COMPOSE, "http://prefect-server:4200/api", "http://prefect-server:4201/api", "port 4201"),
    ("compose ports", COMPOSE, "- 127.0.0.1:8787:8787", "- 8787:8787", "beyond 127.0.0.1"),
    ("compose ports", COMPOSE, "tcp://dask-scheduler:8786", "tcp://dask-scheduler:8787", "dask scheduler's comm port"),
    (
        "compose ports",
        COMPOSE,
        "PREFECT_UI_API_URL:-http://127.0.0.1:4200/api",
        "PREFECT_UI_API_URL:-http://127.0.0.1:4300/api",
        "PREFECT_UI_API_URL",
    ),
    (
        "kubernetes ports",
        "kubernetes/config.yaml",
        "tcp://mlpipe-scheduler:8786",
        "tcp://mlpipe-scheduler:8787",
        "dask scheduler's comm port",
    ),
    ("kubernetes ports", "kubernetes/mlflow.yaml", '--port, "5000"', '--port, "5001"', "api port 5001"),
    ("kubernetes ports", "kubernetes/prefect-server.yaml", "targetPort: http", "targetPort: 4300", "not a port of"),
    (
        "compose ports",
        COMPOSE,
        "urlopen('http://127.0.0.1:5000/health')",
        "urlopen('http://127.0.0.1:4200/health')",
        "health check",
    ),
    (
        "kubernetes ports",
        "kubernetes/dask-cluster.yaml",
        "port: http-dashboard",
        "port: tcp-dashboard",
        "readinessProbe",
    ),
    ("compose gpu", COMPOSE, ", --resources, GPU=1]", "]", "does not advertise --resources GPU=1"),
    (
        "kubernetes gpu",
        "kubernetes/dask-cluster.yaml",
        "              nvidia.com/gpu: 1\n",
        "",
        "without being given a GPU",
    ),
    (
        "compose serving",
        COMPOSE,
        "urlopen('http://127.0.0.1:8000/ready')",
        "urlopen('http://127.0.0.1:8000/health')",
        "must call /ready on port 8000",
    ),
    ("compose serving", COMPOSE, "    stop_grace_period: 30s  # draining", "    # draining", "no stop_grace_period"),
    (
        "compose secrets",
        COMPOSE,
        "${MLPIPE_API_KEYS:?set MLPIPE_API_KEYS (comma-separated keys callers send)}",
        "${MLPIPE_API_KEYS:-key}",
        "MLPIPE_API_KEYS is not a required variable",
    ),
    ("kubernetes serving", "kubernetes/serve.yaml", "path: /ready", "path: /health", "readinessProbe must call /ready"),
    ("kubernetes serving", "kubernetes/serve.yaml", "path: /health", "path: /ready", "livenessProbe must call /health"),
    (
        "kubernetes serving",
        "kubernetes/serve.yaml",
        "      terminationGracePeriodSeconds: 30",
        "      # terminationGracePeriodSeconds: 30",
        "no terminationGracePeriodSeconds",
    ),
    ("kubernetes serving", "kubernetes/serve.yaml", '--workers, "2"]', '--workers, "2", --no-auth]', "--no-auth"),
    (
        "kubernetes serving",
        "kubernetes/serve.yaml",
        "name: MLPIPE_API_KEYS",
        "name: MLPIPE_API_KEY",
        "neither MLPIPE_API_KEYS nor --api-keys-secret",
    ),
    ("kubernetes serving", "kubernetes/serve.yaml", "name: serve\n  ports:", "name: other\n  ports:", "no Service"),
    (
        "kubernetes ports",
        "kubernetes/serve.yaml",
        "containerPort: 8000",
        "containerPort: 8080",
        "readinessProbe calls port http",
    ),
    ("kubernetes secrets", "README.md", "--from-literal=api-keys=", "--from-literal=keys=", "mlpipe-serve/api-keys"),
    ("images", "constraints.txt", "prefect==", "prefect==0.", "prefect==0."),
    ("images", "kubernetes/kustomization.yaml", 'newTag: "', 'newTag: "9', "kustomization.yaml: image mlpipe tag 9"),
    ("images", COMPOSE, "image: postgres:17.6", "image: postgres", "no pinned tag"),
    ("images", "Dockerfile", "COPY tasks ./tasks\n", "", "does not copy tasks/"),
    ("images", "Dockerfile", '--constraint infra/constraints.txt ".[cluster]"', '"."', "constraints"),
]


@pytest.mark.parametrize("check", CHECKS)
def test_the_manifests_pass(check: str) -> None:
    assert CHECKS[check](INFRA) == []


@pytest.mark.parametrize(
    ("check", "file", "text", "replacement", "phrase"), BREAKAGES, ids=[f"{b[0]}: {b[4]}" for b in BREAKAGES]
)
def test_each_check_reports_a_broken_manifest(
    tmp_path: Path, check: str, file: str, text: str, replacement: str, phrase: str
) -> None:
    infra = tmp_path / "infra"
    shutil.copytree(INFRA, infra, ignore=shutil.ignore_patterns("__pycache__"))
    path = infra / file
    original = path.read_text()
    assert text in original, f"{file} no longer holds {text!r}: update this breakage"
    path.write_text(original.replace(text, replacement, 1))

    problems = CHECKS[check](infra)

    assert any(phrase in problem for problem in problems), problems


def test_the_gpu_worker_starts_only_with_the_gpu_profile() -> None:
    """A host without GPUs runs `docker compose up` as is; `--profile gpu` adds the GPU worker."""
    profiles = {container.where: container.raw.get("profiles") for container in compose_containers(INFRA)}
    gpu = {container.where for container in compose_containers(INFRA) if checks.compose_requests_gpu(container)}
    assert gpu
    assert {where: profile for where, profile in profiles.items() if profile} == {where: ["gpu"] for where in gpu}
