"""A small client for the MLflow REST API: just what a device needs.

Resolve a model version by alias or number, download its files, log metrics and
tags to its run. Plain ``requests``, so a device needs neither TensorFlow nor mlflow.
Credentials follow MLflow's own environment variables.
"""
from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

_TIMEOUT_S = 15


class RegistryError(RuntimeError):
    """The server answered with an error."""


class ServerUnreachable(RegistryError):
    """The server could not be reached at all."""


class NotFound(RegistryError):
    """The model, version or alias does not exist."""


@dataclass(frozen=True)
class Credentials:
    token: str | None = field(default=None, repr=False)
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None) -> "Credentials":
        env = os.environ if env is None else env
        return cls(
            token=env.get("MLFLOW_TRACKING_TOKEN") or None,
            username=env.get("MLFLOW_TRACKING_USERNAME") or None,
            password=env.get("MLFLOW_TRACKING_PASSWORD") or None,
        )

    @classmethod
    def from_file(cls, path: Path) -> "Credentials":
        """KEY=VALUE lines with MLflow's variable names; the file must be readable by its owner only."""
        mode = path.stat().st_mode
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            raise PermissionError(f"{path} is readable by others; run: chmod 600 {path}")
        values = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            key, sep, value = line.strip().partition("=")
            if sep and not key.startswith("#"):
                values[key.strip()] = value.strip()
        return cls.from_env(values)


def tls_verify_from_env() -> bool | str:
    """MLflow's TLS settings: verification on unless MLFLOW_TRACKING_INSECURE_TLS=true."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return False
    return os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]
    aliases: tuple[str, ...]

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelVersion":
        return cls(
            name=data["name"],
            version=str(data["version"]),
            run_id=data.get("run_id", ""),
            tags={t["key"]: t.get("value", "") for t in data.get("tags", [])},
            aliases=tuple(data.get("aliases", [])),
        )


class RegistryClient:
    """MLflow tracking server at ``base_uri`` (http or https)."""

    def __init__(self, base_uri: str, credentials: Credentials | None = None, verify: bool | str = True):
        if not base_uri.startswith(("http://", "https://")):
            raise ValueError(f"tracking URI must be http(s)://…, got {base_uri!r}")
        self.base_uri = base_uri.rstrip("/")
        self.session = requests.Session()
        self.session.verify = verify
        creds = credentials or Credentials()
        if creds.token:
            self.session.headers["Authorization"] = f"Bearer {creds.token}"
        elif creds.username and creds.password:
            self.session.auth = (creds.username, creds.password)

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.base_uri + path, timeout=_TIMEOUT_S, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryError(f"TLS verification failed for {self.base_uri}: {exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise ServerUnreachable(f"cannot reach {self.base_uri} ({type(exc).__name__})") from exc
        if response.status_code == 404 or "RESOURCE_DOES_NOT_EXIST" in response.text[:500]:
            raise NotFound(_error_message(response))
        if response.status_code in (401, 403):
            raise RegistryError(f"{self.base_uri} refused the credentials (HTTP {response.status_code})")
        if response.status_code >= 500:
            raise ServerUnreachable(f"{self.base_uri} failed: {_error_message(response)}")
        if response.status_code >= 400:
            raise RegistryError(_error_message(response))
        return response

    def version_by_alias(self, name: str, alias: str) -> ModelVersion:
        r = self._request("GET", "/api/2.0/mlflow/registered-models/alias", params={"name": name, "alias": alias})
        return ModelVersion.from_json(r.json()["model_version"])

    def version(self, name: str, version: str) -> ModelVersion:
        r = self._request("GET", "/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version})
        return ModelVersion.from_json(r.json()["model_version"])

    def download(self, mv: ModelVersion, filename: str, dest: Path) -> int:
        """Stream one file of the version's artifact to ``dest``; returns bytes written."""
        params = {"name": mv.name, "version": mv.version, "path": filename}
        written = 0
        with self._request("GET", "/model-versions/get-artifact", params=params, stream=True) as r:
            with open(dest, "wb") as fh:
                for chunk in r.iter_content(1 << 16):
                    fh.write(chunk)
                    written += len(chunk)
        return written

    def log_batch(self, run_id: str, metrics: dict[str, float], tags: dict[str, str], timestamp_ms: int | None = None) -> None:
        ts = timestamp_ms or int(time.time() * 1000)
        body = {
            "run_id": run_id,
            "metrics": [{"key": k, "value": float(v), "timestamp": ts, "step": 0} for k, v in metrics.items()],
            "tags": [{"key": k, "value": str(v)[:5000]} for k, v in tags.items()],
        }
        self._request("POST", "/api/2.0/mlflow/runs/log-batch", json=body)


def _error_message(response: requests.Response) -> str:
    try:
        data = response.json()
        return f"{data.get('error_code', response.status_code)}: {data.get('message', '')}".strip()
    except ValueError:
        return f"HTTP {response.status_code}: {response.text[:200]}"


def check_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast with ServerUnreachable when an http(s) tracking server does not answer /health."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s, verify=tls_verify_from_env()).raise_for_status()
    except requests.RequestException as exc:
        raise ServerUnreachable(
            f"MLflow tracking server {uri} is not reachable ({type(exc).__name__}): start it "
            "(mlflow server --host 127.0.0.1 --port 5000) or set MLFLOW_TRACKING_URI"
        ) from exc
