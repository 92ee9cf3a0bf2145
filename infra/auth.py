"""Credentials of a workspace whose servers require them: from Secret blocks or the environment, never a default.

Clients and servers read the same variables, so one shell that exports them can start the
servers and use them:

- `PREFECT_API_AUTH_STRING` (`user:password`): Prefect clients send it; the server gets it as
  `PREFECT_SERVER_API_AUTH_STRING` (which, when set, is used for the server instead).
- `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`: MLflow clients send them; the
  basic-auth app creates its admin user from them on first start.

A Prefect `Secret` block named by `--prefect-auth-secret` / `--mlflow-password-secret` replaces
the variable holding the secret (as `MlflowConnection.secret_name` does for clients).
"""

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from mlpipe.errors import ConfigError

MLFLOW_DEFAULT_PASSWORD = "password1234"
"""The admin password older MLflow releases created by themselves: never accepted."""
MLFLOW_PASSWORD_LENGTH = 12
"""MLflow's basic-auth app refuses shorter passwords; checked before anything starts."""


@dataclass(frozen=True)
class Credentials:
    prefect_auth_string: str
    mlflow_username: str
    mlflow_password: str


def resolve_credentials(
    reason: str, prefect_secret: str | None = None, mlflow_secret: str | None = None
) -> Credentials:
    """The servers' credentials, or a ConfigError naming each variable that is missing or unsafe."""
    from mlpipe.blocks.secrets import password as secret_or_variable

    prefect = secret_or_variable(prefect_secret, "PREFECT_SERVER_API_AUTH_STRING") or os.environ.get(
        "PREFECT_API_AUTH_STRING", ""
    )
    username = os.environ.get("MLFLOW_TRACKING_USERNAME", "")
    password = secret_or_variable(mlflow_secret, "MLFLOW_TRACKING_PASSWORD") or ""
    problems = []
    if ":" not in prefect or not prefect.partition(":")[2]:
        problems.append("PREFECT_API_AUTH_STRING (user:password) is not set")
    if not username:
        problems.append("MLFLOW_TRACKING_USERNAME is not set")
    if not password:
        problems.append("MLFLOW_TRACKING_PASSWORD is not set")
    elif password == MLFLOW_DEFAULT_PASSWORD:
        problems.append("MLFLOW_TRACKING_PASSWORD is MLflow's well-known default; choose another")
    elif len(password) < MLFLOW_PASSWORD_LENGTH:
        problems.append(f"MLFLOW_TRACKING_PASSWORD must have at least {MLFLOW_PASSWORD_LENGTH} characters")
    if problems:
        raise ConfigError(f"{reason} requires authentication: {'; '.join(problems)}")
    return Credentials(prefect, username, password)


def client_environment(credentials: Credentials) -> dict[str, str]:
    """What the workspace's own clients (Dask workers, the Prefect worker) send to its servers."""
    return {
        "PREFECT_API_AUTH_STRING": credentials.prefect_auth_string,
        "MLFLOW_TRACKING_USERNAME": credentials.mlflow_username,
        "MLFLOW_TRACKING_PASSWORD": credentials.mlflow_password,
    }


def prefect_server_environment(credentials: Credentials) -> dict[str, str]:
    """The Prefect server refuses requests (but its health check) without this `Authorization: Basic`."""
    return {"PREFECT_SERVER_API_AUTH_STRING": credentials.prefect_auth_string}


def mlflow_server_environment(credentials: Credentials, folder: Path) -> dict[str, str]:
    """MLflow's basic-auth app: its users in a database under `folder`, its admin from `credentials`.

    The config file holds no secret: the admin's name and password reach the server in its
    environment, and MLflow hashes the password into its user store on first start (after that,
    change it through MLflow's update-password API).
    """
    config = folder / "mlflow-auth.ini"
    config.write_text(
        "[mlflow]\n"
        "default_permission = READ\n"
        f"database_uri = sqlite:///{folder / 'mlflow-auth.db'}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        "grant_default_workspace_access = false\n"
    )
    return {
        # Signs the UI's CSRF tokens; a fresh one per start (all of one server's workers share it)
        # unless the user sets their own, for several servers behind one address.
        "MLFLOW_FLASK_SERVER_SECRET_KEY": os.environ.get("MLFLOW_FLASK_SERVER_SECRET_KEY") or secrets.token_hex(32),
        "MLFLOW_AUTH_CONFIG_PATH": str(config),
        "MLFLOW_AUTH_ADMIN_USERNAME": credentials.mlflow_username,
        "MLFLOW_AUTH_ADMIN_PASSWORD": credentials.mlflow_password,
    }
