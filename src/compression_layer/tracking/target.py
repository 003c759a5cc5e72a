"""Where the log stage sends a run: an MLflow server, DagsHub's MLflow, or a local store in the project.

Pure functions of an environment mapping, so the choice is testable without touching os.environ.
Credentials go into the process environment only (MLflow reads MLFLOW_TRACKING_USERNAME/PASSWORD);
everything meant for display or files goes through ``display_uri`` / ``scrub`` first.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path
from typing import Literal, Mapping
from urllib.parse import urlsplit, urlunsplit

# Token variables read in this order (DAGSHUB_USER_TOKEN is the dagshub client's own name).
TOKEN_VARS = ("DAGSHUB_USER_TOKEN", "DAGSHUB_TOKEN")
# Variables whose values are secrets wherever they come from: never printed, never written.
SECRET_VARS = TOKEN_VARS + ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN")

LOCAL_DB = "mlflow.db"
LOCAL_ARTIFACTS = "mlartifacts"


class TrackingError(ValueError):
    """The run cannot be logged (bad settings, unreachable or refusing server); one line for the user."""


@dataclasses.dataclass(frozen=True)
class Target:
    """A resolved tracking destination."""

    kind: Literal["server", "dagshub", "local"]
    uri: str  # what MLflow connects to (may be an absolute sqlite path; never holds a password)
    display: str  # the URI as printed and written in the receipt: no credentials, project-relative
    env: Mapping[str, str]  # variables to set in this process before MLflow is imported
    artifact_root: str | None = None  # where new experiments keep artifacts (local store only)
    secrets: tuple[str, ...] = ()  # values to scrub from any message

    def describe(self) -> str:
        return {"server": "MLflow server", "dagshub": "DagsHub MLflow", "local": "local MLflow store"}[self.kind] + (
            f" {self.display}"
        )


def display_uri(uri: str) -> str:
    """The URI without user name or password (``https://u:p@host/x`` -> ``https://host/x``)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


def secret_values(env: Mapping[str, str]) -> tuple[str, ...]:
    """Every secret this environment holds (tokens, passwords, a password inside MLFLOW_TRACKING_URI)."""
    values = [env[name] for name in SECRET_VARS if env.get(name)]
    uri = env.get("MLFLOW_TRACKING_URI", "")
    if uri:
        parts = urlsplit(uri)
        values += [v for v in (parts.password, parts.username) if v]
    # Longest first, so a token that contains another secret is replaced whole.
    return tuple(sorted({v for v in values if len(v) >= 4}, key=len, reverse=True))


def scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Replace every secret value in ``text`` with ``***`` and drop credentials from URLs."""
    for value in secrets:
        text = text.replace(value, "***")
    return re.sub(r"(\w+://)[^/@\s:]+(?::[^/@\s]*)?@", r"\1", text)


def resolve(env: Mapping[str, str], project_dir: str | Path) -> Target:
    """Pick the destination: MLFLOW_TRACKING_URI, else DAGSHUB_OWNER/DAGSHUB_REPO + token, else local.

    Never calls dagshub.init (it contacts DagsHub and may start a browser login): DagsHub's MLflow takes
    the user name and token as HTTP basic auth, which MLflow reads from the two variables set here.
    """
    secrets = secret_values(env)
    uri = env.get("MLFLOW_TRACKING_URI", "").strip()
    if uri:
        parts = urlsplit(uri)
        if parts.username or parts.password:
            # MLflow prints run links built from this URI, credentials included: keep them out of it.
            raise TrackingError(
                "MLFLOW_TRACKING_URI holds credentials; put them in MLFLOW_TRACKING_USERNAME and "
                f"MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) instead: {display_uri(uri)}"
            )
        return Target("server", uri, display_uri(uri), {}, secrets=secrets)

    owner, repo = env.get("DAGSHUB_OWNER", "").strip(), env.get("DAGSHUB_REPO", "").strip()
    token = next((env[name] for name in TOKEN_VARS if env.get(name)), "")
    if owner or repo:
        if not (owner and repo):
            missing = "DAGSHUB_REPO" if owner else "DAGSHUB_OWNER"
            raise TrackingError(f"DagsHub tracking needs both DAGSHUB_OWNER and DAGSHUB_REPO; {missing} is not set")
        if not token:
            raise TrackingError(
                f"DagsHub tracking for {owner}/{repo} needs a token in DAGSHUB_USER_TOKEN (or DAGSHUB_TOKEN); "
                "unset DAGSHUB_OWNER/DAGSHUB_REPO to log to the local store instead"
            )
        # DAGSHUB_CLIENT_HOST is the dagshub client's own variable for a self-hosted DagsHub.
        host = (env.get("DAGSHUB_CLIENT_HOST") or "https://dagshub.com").strip().rstrip("/")
        uri = f"{host}/{owner}/{repo}.mlflow"
        # DagsHub's basic auth wants the user name and the token as password.
        user = env.get("MLFLOW_TRACKING_USERNAME") or env.get("DAGSHUB_USERNAME") or owner
        credentials = {"MLFLOW_TRACKING_USERNAME": user, "MLFLOW_TRACKING_PASSWORD": token}
        return Target("dagshub", uri, uri, credentials, secrets=secrets)

    project = Path(project_dir).resolve()
    uri = f"sqlite:///{project / LOCAL_DB}"
    return Target(
        "local", uri, f"sqlite:///{LOCAL_DB}", {}, artifact_root=(project / LOCAL_ARTIFACTS).as_uri(), secrets=secrets
    )


def http_limits(env: Mapping[str, str], timeout: int, retries: int) -> dict[str, str]:
    """MLflow's HTTP timeout and retry variables, unless the user set them (its defaults wait minutes)."""
    wanted = {"MLFLOW_HTTP_REQUEST_TIMEOUT": str(timeout), "MLFLOW_HTTP_REQUEST_MAX_RETRIES": str(retries)}
    return {name: value for name, value in wanted.items() if not env.get(name)}
