"""A small client for the MLflow REST API: just what a device needs.

Resolve a model version by alias or number, download its files, log metrics and
tags to a run, keep a fleet run. Plain ``requests``, so a device needs neither
TensorFlow nor mlflow. Credentials follow MLflow's own environment variables.

Every body is streamed and capped: nothing the server sends can make the device
read more than the caps below into memory or onto its disk. A busy server's answer (429, 503)
is tried again after a jittered, growing wait, within the run's deadline.
"""
from __future__ import annotations

import json
import os
import random
import signal
import stat
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlsplit

import requests

from edge import clock, contract

_TIMEOUT_S = 15
_JSON_CAP_BYTES = 4 << 20  # an API answer larger than this is not one a device asked for
_ERROR_CAP_BYTES = 64 << 10
_CHUNK = 1 << 16
# A server that says it is busy (or a store that is locked) did not do the request: send it again, spread out.
_BUSY = (429, 503)
_BUSY_TRIES = 5
_BACKOFF_FIRST_S = 0.5
_BACKOFF_CAP_S = 8.0
_LAST_TRY_S = 1.0  # no wait that would leave the try after it less than this of the deadline


class RegistryError(RuntimeError):
    """The server answered with an error."""


class ServerUnreachable(RegistryError):
    """The server could not be reached, failed (5xx), cut the connection, sent what no MLflow server
    sends, or the run's deadline passed: the device cannot trust this answer, and tries again next run."""


class Nonsense(ServerUnreachable):
    """The server answered 200 with a body no MLflow server sends for that request (a proxy, a portal, a bug)."""

    def __init__(self, what: str):
        super().__init__(f"the server answered nonsense ({what})")


class Refused(RegistryError):
    """The server refused the request itself (HTTP 400/404): sending it again cannot help."""

    def __init__(self, message: str, error_code: str | None = None, detail: str = ""):
        super().__init__(message)
        self.error_code = error_code  # MLflow's (RESOURCE_DOES_NOT_EXIST, …), "HTTP <status>" for a non-JSON answer
        self.detail = detail  # the server's message alone


class NotFound(Refused):
    """The model, version, alias or run does not exist (HTTP 404 / RESOURCE_DOES_NOT_EXIST)."""


class AuthError(RegistryError):
    """The server refused the credentials (HTTP 401/403): fix them, nothing else helps."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(message)
        self.detail = detail  # the server's own words ("PERMISSION_DENIED: …"), for whoever reads the error


class TooLarge(RegistryError):
    """The server sent more bytes than the cap allows."""


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


def check_tracking_uri(uri: str) -> str:
    """An http(s) URI without credentials in it (they would end up in logs and crontabs)."""
    if not uri.startswith(("http://", "https://")):
        raise ValueError(f"tracking URI must be http(s)://…, got {redact_uri(uri)!r}")
    parts = urlsplit(uri)
    if parts.username or parts.password:
        raise ValueError(
            f"the tracking URI {redact_uri(uri)} carries credentials; remove them and put "
            "MLFLOW_TRACKING_USERNAME/MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in a mode-600 "
            "file given with --credentials-file"
        )
    return uri.rstrip("/")


def redact_uri(uri: str) -> str:
    """``https://user:pass@host`` → ``https://***@host``; other URIs unchanged."""
    parts = urlsplit(uri)
    if not (parts.username or parts.password):
        return uri
    return uri.replace(parts.netloc, "***@" + parts.netloc.rpartition("@")[2], 1)


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str
    tags: dict[str, str]
    aliases: tuple[str, ...]

    @classmethod
    def from_json(cls, data: Any, asked_name: str) -> "ModelVersion":
        """The ``model_version`` object of an answer, every field checked; Nonsense when one is off."""
        if not isinstance(data, dict):
            raise Nonsense("no model_version object")
        try:
            version = contract.check_version_number(str(data.get("version")))
        except ValueError as exc:
            raise Nonsense(f"a malformed model version: {exc}") from None
        if data.get("name") != asked_name:
            raise Nonsense(f"asked for model {asked_name!r}, got {str(data.get('name'))[:80]!r}")
        run_id, tags, aliases = data.get("run_id", ""), data.get("tags", []), data.get("aliases", [])
        if not isinstance(run_id, str) or not isinstance(tags, list) or not isinstance(aliases, list):
            raise Nonsense("model_version fields of the wrong type")
        if not all(isinstance(t, dict) and isinstance(t.get("key"), str) and isinstance(t.get("value", ""), str)
                   for t in tags):
            raise Nonsense("model_version tags that are not key/value strings")
        return cls(name=asked_name, version=version, run_id=run_id,
                   tags={t["key"]: t.get("value", "") for t in tags}, aliases=tuple(str(a) for a in aliases))


class Deadline:
    """Seconds left for the whole run; every request's timeout and every download loop obey it."""

    def __init__(self, seconds: float | None):
        self.seconds = seconds
        self._end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self._end is None else self._end - time.monotonic()

    def timeout(self) -> float:
        left = self.remaining()
        if left is not None and left <= 0:
            raise ServerUnreachable(f"the run's deadline of {self.seconds:.0f} s passed (--deadline)")
        return _TIMEOUT_S if left is None else max(0.1, min(_TIMEOUT_S, left))

    @contextmanager
    def enforced(self) -> Iterator[None]:
        """Interrupt a blocking read when the deadline passes.

        Socket timeouts cannot stop a server that drips one byte every few seconds;
        an interval timer can. Only in the main thread (where signals are delivered).
        """
        left = self.remaining()
        if left is None or threading.current_thread() is not threading.main_thread():
            yield
            return
        if left <= 0:
            self.timeout()

        def expired(signum: int, frame: object) -> None:
            raise ServerUnreachable(f"the run's deadline of {self.seconds:.0f} s passed (--deadline)")

        previous = signal.signal(signal.SIGALRM, expired)
        signal.setitimer(signal.ITIMER_REAL, left)
        try:
            yield
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, previous)


class RegistryClient:
    """MLflow tracking server at ``base_uri`` (http or https)."""

    json_cap_bytes = _JSON_CAP_BYTES

    def __init__(self, base_uri: str, credentials: Credentials | None = None, verify: bool | str = True,
                 deadline: Deadline | None = None):
        self.base_uri = check_tracking_uri(base_uri)
        self.deadline = deadline or Deadline(None)
        self.session = requests.Session()
        self.session.verify = verify
        creds = credentials or Credentials()
        if creds.token:
            self.session.headers["Authorization"] = f"Bearer {creds.token}"
        elif creds.username and creds.password:
            self.session.auth = (creds.username, creds.password)

    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send (again while the server says it is busy); raise the matching error for any status but 2xx,
        before the body is read."""
        for attempt in range(_BUSY_TRIES):
            response = self._send(method, path, **kwargs)
            wait = backoff_s(attempt, response.headers.get("Retry-After"))
            left = self.deadline.remaining()
            if (response.status_code not in _BUSY or attempt == _BUSY_TRIES - 1
                    or (left is not None and wait + _LAST_TRY_S >= left)):
                break
            response.close()
            time.sleep(wait)
        code = response.status_code
        if code < 400:
            return response
        with response:
            error_code, detail = self._error_parts(response)
        message = f"{error_code or code}: {detail}".strip()
        if code in (401, 403):
            raise AuthError(f"{self.base_uri} refused the credentials (HTTP {code}); check the credentials file", message)
        if code >= 500 or code in (408, 429):
            raise ServerUnreachable(f"{self.base_uri} failed: {message}")
        if code == 404 or "RESOURCE_DOES_NOT_EXIST" in message:
            raise NotFound(message, error_code, detail)
        raise Refused(message, error_code, detail)

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.base_uri + path, timeout=self.deadline.timeout(),
                                            stream=True, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryError(f"TLS verification failed for {self.base_uri}: {exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise ServerUnreachable(f"cannot reach {self.base_uri} ({type(exc).__name__})") from exc
        clock.observe_date(response.headers.get("Date"))  # the server's time, for the device's clock
        return response

    def _error_parts(self, response: requests.Response) -> tuple[str | None, str]:
        """(error code, message) of an error answer, whatever its body: MLflow's JSON object gives both (its
        code may be missing: None); anything else is ``HTTP <status>`` and the body's start."""
        try:
            body = self._read_capped(response, _ERROR_CAP_BYTES, truncate=True)
        except ServerUnreachable:
            body = b""
        try:
            data = json.loads(body)
        except ValueError:
            data = None
        if isinstance(data, dict):
            code = data.get("error_code")
            return (str(code) if code else None), str(data.get("message", ""))
        return f"HTTP {response.status_code}", body[:200].decode("utf-8", "replace")

    def _read_capped(self, response: requests.Response, cap: int, truncate: bool = False) -> bytes:
        data = bytearray()
        try:
            for chunk in response.iter_content(_CHUNK):
                data += chunk
                if len(data) > cap:
                    if truncate:
                        return bytes(data[:cap])
                    raise ServerUnreachable(f"{self.base_uri} sent more than {cap} bytes for one API answer")
                self.deadline.timeout()
        except requests.exceptions.RequestException as exc:
            raise ServerUnreachable(f"connection to {self.base_uri} broke while reading ({type(exc).__name__})") from exc
        return bytes(data)

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        with self.deadline.enforced(), self._request(method, path, **kwargs) as response:
            body = self._read_capped(response, self.json_cap_bytes)
        try:
            data = json.loads(body) if body else {}
        except ValueError as exc:
            raise ServerUnreachable(f"{self.base_uri} sent an answer that is not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise Nonsense(f"a JSON {type(data).__name__} where an object belongs")
        return data

    def version_by_alias(self, name: str, alias: str) -> ModelVersion:
        data = self._json("GET", "/api/2.0/mlflow/registered-models/alias", params={"name": name, "alias": alias})
        return ModelVersion.from_json(data.get("model_version"), name)

    def version(self, name: str, version: str) -> ModelVersion:
        data = self._json("GET", "/api/2.0/mlflow/model-versions/get", params={"name": name, "version": version})
        return ModelVersion.from_json(data.get("model_version"), name)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """``(timestamp_ms, value)`` of every point of one metric of one run: its size never grows with the fleet."""
        data = self._json("GET", "/api/2.0/mlflow/metrics/get-history", params={"run_id": run_id, "metric_key": key})
        points = data.get("metrics", [])
        if not isinstance(points, list):
            raise Nonsense("metrics/get-history without a metrics list")
        try:
            return [(int(p["timestamp"]), float(p["value"])) for p in points if p.get("key", key) == key]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise Nonsense("metrics/get-history points without timestamp and value") from None

    def registered_accuracy(self, run_id: str) -> float | None:
        """The latest ``test_accuracy`` of the version's run, or None when the run has none.

        Read as one metric's history, not the whole run: a version run's size may grow with
        what devices and people log on it; this read does not.
        """
        try:
            points = self.metric_history(run_id, contract.M_ACCURACY)
        except NotFound:  # the version's run was deleted: it registers no accuracy any more
            return None
        if not points:
            return None
        value = max(points)[1]
        if not 0.0 <= value <= 1.0:
            raise Nonsense(f"{contract.M_ACCURACY} {value} is not a fraction")
        return value

    def download(self, mv: ModelVersion, filename: str, dest: Path, max_bytes: int) -> int:
        """Stream one file of the version's artifact to ``dest`` (at most ``max_bytes``); returns bytes written."""
        params = {"name": mv.name, "version": mv.version, "path": filename}
        written = 0
        with self.deadline.enforced(), self._request("GET", "/model-versions/get-artifact", params=params) as r:
            declared = r.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(f"{filename} is {int(declared)} bytes, more than the {max_bytes} allowed")
            try:
                with open(dest, "wb") as fh:
                    for chunk in r.iter_content(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise TooLarge(f"{filename} is larger than the {max_bytes} bytes allowed")
                        fh.write(chunk)
                        self.deadline.timeout()
            except requests.exceptions.RequestException as exc:
                raise ServerUnreachable(
                    f"download of {filename} broke after {written} bytes ({type(exc).__name__})") from exc
        return written

    def log_batch(self, run_id: str, metrics: dict[str, float], tags: dict[str, str], timestamp_ms: int | None = None,
                  step: int = 0, params: dict[str, str] | None = None) -> None:
        """Metrics, tags and write-once params in one atomic request (params are never cut: a cut one would not verify)."""
        ts = timestamp_ms or int(time.time() * 1000)
        body = {
            "run_id": run_id,
            "metrics": [{"key": k, "value": float(v), "timestamp": ts, "step": step} for k, v in metrics.items()],
            "tags": [{"key": k, "value": str(v)[:5000]} for k, v in tags.items()],
        }
        if params:
            body["params"] = [{"key": k, "value": str(v)} for k, v in params.items()]
        self._json("POST", "/api/2.0/mlflow/runs/log-batch", json=body)

    def model_tags(self, name: str) -> dict[str, str]:
        """The registered model's tags (where the operator records, e.g., the fleet experiment's id)."""
        data = self._json("GET", "/api/2.0/mlflow/registered-models/get", params={"name": name})
        model = data.get("registered_model")
        if not isinstance(model, dict) or model.get("name") != name:
            raise Nonsense(f"registered-models/get without the registered model {name!r}")
        tags = model.get("tags", [])
        if not isinstance(tags, list) or not all(isinstance(t, dict) and isinstance(t.get("key"), str)
                                                 and isinstance(t.get("value", ""), str) for t in tags):
            raise Nonsense("registered model tags that are not key/value strings")
        return {t["key"]: t.get("value", "") for t in tags}

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created when missing (two devices may race: both end with the same id).

        Created, or found without a kind, it gets MLflow's training layout (contract.TAG_EXPERIMENT_KIND)."""
        kind = {"key": contract.TAG_EXPERIMENT_KIND, "value": contract.EXPERIMENT_KIND_TRAINING}

        def by_name() -> str:
            found = self._json("GET", "/api/2.0/mlflow/experiments/get-by-name", params={"experiment_name": name})
            experiment_id = _field(found, "experiment", "experiment_id")
            tags = found["experiment"].get("tags", [])
            if isinstance(tags, list) and not any(isinstance(t, dict) and t.get("key") == kind["key"] for t in tags):
                try:  # the layout is cosmetic: a device without the right to tag still sends its heartbeat
                    self._json("POST", "/api/2.0/mlflow/experiments/set-experiment-tag",
                               json={"experiment_id": experiment_id, **kind})
                except (Refused, AuthError):
                    pass
            return experiment_id

        try:
            return by_name()
        except NotFound:
            pass
        try:
            return _field(self._json("POST", "/api/2.0/mlflow/experiments/create", json={"name": name, "tags": [kind]}),
                          "experiment_id")
        except Refused:  # RESOURCE_ALREADY_EXISTS: another device created it meanwhile
            return by_name()

    def find_run(self, experiment_id: str, tags: dict[str, str], kind: str = "tags") -> str | None:
        """The oldest run of the experiment carrying all ``tags`` (``kind="params"``: all those params), or None."""
        clauses = " and ".join(f"{kind}.`{k}` = '{v}'" for k, v in tags.items())
        data = self._json("POST", "/api/2.0/mlflow/runs/search", json={
            "experiment_ids": [experiment_id], "filter": clauses, "max_results": 1, "order_by": ["attributes.start_time ASC"],
        })
        runs = data.get("runs", [])
        if not isinstance(runs, list):
            raise Nonsense("runs/search without a runs list")
        return _field(runs[0], "info", "run_id") if runs else None

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        data = self._json("POST", "/api/2.0/mlflow/runs/create", json={
            "experiment_id": experiment_id, "run_name": run_name, "start_time": int(time.time() * 1000),
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        })
        return _field(data, "run", "info", "run_id")

    # -- device evidence layout ------------------------------------------------------------------------------------

    def start_run(self, experiment_id: str, run_name: str, tags: dict[str, str], start_time_ms: int) -> str:
        """``create_run`` with the start time given (the server-corrected one, edge/clock.py)."""
        data = self._json("POST", "/api/2.0/mlflow/runs/create", json={
            "experiment_id": experiment_id, "run_name": run_name, "start_time": int(start_time_ms),
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        })
        return _field(data, "run", "info", "run_id")

    def finish_run(self, run_id: str, end_time_ms: int) -> None:
        """Mark a run FINISHED at ``end_time_ms``: a device run's end time is its "last seen", no history row."""
        self._json("POST", "/api/2.0/mlflow/runs/update",
                   json={"run_id": run_id, "status": "FINISHED", "end_time": int(end_time_ms)})


def backoff_s(attempt: int, retry_after: str | None = None) -> float:
    """Seconds before try ``attempt + 2`` after a busy answer: a random share of a doubling cap (devices that
    failed together do not come back together), at least the server's Retry-After (in seconds) up to the cap."""
    wait = random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * 2 ** (attempt + 1)))
    if retry_after and retry_after.strip().isdigit():
        wait = max(wait, min(_BACKOFF_CAP_S, float(retry_after)))
    return wait


def _field(data: Any, *path: str) -> str:
    """``data[path[0]][path[1]]…`` as a non-empty string, or Nonsense naming the missing field."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            raise Nonsense(f"no {'.'.join(path)} in the answer")
        data = data[key]
    if not isinstance(data, str) or not data:
        raise Nonsense(f"{'.'.join(path)} is not a string")
    return data


def check_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast with ServerUnreachable when an http(s) tracking server does not answer /health."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s, verify=tls_verify_from_env()).raise_for_status()
    except requests.RequestException as exc:
        raise ServerUnreachable(
            f"MLflow tracking server {redact_uri(uri)} is not reachable ({type(exc).__name__}): start it "
            "(mlflow server --host 127.0.0.1 --port 5000) or set MLFLOW_TRACKING_URI"
        ) from exc
