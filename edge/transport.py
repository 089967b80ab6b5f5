"""The one HTTP transport to an MLflow server that every REST client of edgeq (device, operator, admin, tests) uses.

Plain ``requests``: a device needs neither TensorFlow nor mlflow. Credentials and TLS follow MLflow's own
environment variables. Every body is streamed and capped: nothing the server sends can make the caller read
more than its cap into memory or onto its disk. A busy server's answer (429, 503) is tried again after a
jittered, growing wait, within the deadline. Every answer's ``Date`` header sets the device's clock
(edge/clock.py). Every failure is one of the errors below, with a message a person can act on.
"""
from __future__ import annotations

import ipaddress
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

from edge import clock

TIMEOUT_S = 15.0  # one request's, when the caller gives none
JSON_CAP_BYTES = 4 << 20  # an API answer larger than this is not one a device asked for
_ERROR_CAP_BYTES = 64 << 10
_CHUNK = 1 << 16
# A server that says it is busy (or a store that is locked) did not do the request: send it again, spread out.
_BUSY = (429, 503)
_BUSY_TRIES = 5
_BACKOFF_FIRST_S = 0.5
_BACKOFF_CAP_S = 8.0
_LAST_TRY_S = 1.0  # no wait that would leave the try after it less than this of the deadline
_DEFAULT_PORTS = {"http": 80, "https": 443}
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


class RegistryError(RuntimeError):
    """The server answered with an error."""


class ServerUnreachable(RegistryError):
    """The server could not be reached, failed (5xx), cut the connection, sent what no MLflow server
    sends, or the deadline passed: the caller cannot trust this answer, and tries again later."""


class Nonsense(ServerUnreachable):
    """The server answered 200 with a body no MLflow server sends for that request (a proxy, a portal, a bug)."""

    def __init__(self, what: str):
        super().__init__(f"the server answered nonsense ({what})")


class Refused(RegistryError):
    """The server refused the request itself (HTTP 400/404): sending it again cannot help."""

    def __init__(self, message: str, error_code: str | None = None, detail: str = "", status: int | None = None):
        super().__init__(message)
        self.error_code = error_code  # MLflow's (RESOURCE_DOES_NOT_EXIST, …), "HTTP <status>" for a non-JSON answer
        self.detail = detail  # the server's message alone
        self.status = status


class NotFound(Refused):
    """The model, version, alias or run does not exist (HTTP 404 / RESOURCE_DOES_NOT_EXIST)."""


class AuthError(RegistryError):
    """The server refused the credentials (HTTP 401/403): fix them, nothing else helps."""

    def __init__(self, message: str, detail: str = "", status: int | None = None):
        super().__init__(message)
        self.detail = detail  # the server's own words ("PERMISSION_DENIED: …"), for whoever reads the error
        self.status = status


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


class Deadline:
    """Seconds left for a whole run (None: no end), and the longest one request may wait (``request_s``);
    every request's timeout and every download loop obey both."""

    def __init__(self, seconds: float | None, request_s: float = TIMEOUT_S):
        self.seconds = seconds
        self.request_s = request_s
        self._end = None if seconds is None else time.monotonic() + seconds

    def remaining(self) -> float | None:
        return None if self._end is None else self._end - time.monotonic()

    def timeout(self) -> float:
        left = self.remaining()
        if left is not None and left <= 0:
            raise ServerUnreachable(f"the run's deadline of {self.seconds:.0f} s passed (--deadline)")
        return self.request_s if left is None else max(0.1, min(self.request_s, left))

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


class Transport:
    """Requests to the MLflow server at ``base_uri`` (http or https): the one place that sends them."""

    def __init__(self, base_uri: str, credentials: Credentials | None = None, verify: bool | str = True,
                 deadline: Deadline | None = None, json_cap_bytes: int = JSON_CAP_BYTES,
                 credentials_hint: str = "check the credentials file", server_options: str = ""):
        self.base_uri = check_tracking_uri(base_uri)
        self.server_options = server_options  # what the server must be started with, e.g. --auth
        self.deadline = deadline or Deadline(None)
        self.json_cap_bytes = json_cap_bytes
        self.credentials_hint = credentials_hint
        self.session = requests.Session()
        self.session.verify = verify
        creds = credentials or Credentials()
        if creds.token:
            self.session.headers["Authorization"] = f"Bearer {creds.token}"
        elif creds.username and creds.password:
            self.session.auth = (creds.username, creds.password)

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Send (again while the server says it is busy); raise the matching error for any status but 2xx,
        before the body is read. The answer is streamed: read it within ``deadline.enforced()``."""
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
            raise AuthError(f"{self.base_uri} refused the credentials (HTTP {code}); {self.credentials_hint}",
                            message, code)
        if code >= 500 or code in (408, 429):
            raise ServerUnreachable(f"{self.base_uri} failed: {message}")
        if code == 404 or "RESOURCE_DOES_NOT_EXIST" in message:
            raise NotFound(message, error_code, detail, code)
        raise Refused(message, error_code, detail, code)

    def json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        """The answer's JSON object (``{}`` for an empty body), read within the cap and the deadline."""
        with self.deadline.enforced(), self.request(method, path, **kwargs) as response:
            body = self._read_capped(response, self.json_cap_bytes)
        try:
            data = json.loads(body) if body else {}
        except ValueError as exc:
            raise ServerUnreachable(f"{self.base_uri} sent an answer that is not JSON ({exc})") from exc
        if not isinstance(data, dict):
            raise Nonsense(f"a JSON {type(data).__name__} where an object belongs")
        return data

    def put(self, path: str, data: bytes) -> None:
        """Send ``data`` (an artifact's bytes: sent again whole when the server is busy); the answer is not read."""
        with self.deadline.enforced(), self.request("PUT", path, data=data):
            pass

    def download(self, path: str, dest: Path, max_bytes: int, what: str, **kwargs: Any) -> int:
        """Stream the answer to ``dest`` (at most ``max_bytes``, TooLarge beyond); returns the bytes written."""
        written = 0
        with self.deadline.enforced(), self.request("GET", path, **kwargs) as r:
            declared = r.headers.get("Content-Length")
            if declared and declared.isdigit() and int(declared) > max_bytes:
                raise TooLarge(f"{what} is {int(declared)} bytes, more than the {max_bytes} allowed")
            try:
                with open(dest, "wb") as fh:
                    for chunk in r.iter_content(_CHUNK):
                        written += len(chunk)
                        if written > max_bytes:
                            raise TooLarge(f"{what} is larger than the {max_bytes} bytes allowed")
                        fh.write(chunk)
                        self.deadline.timeout()
            except requests.exceptions.RequestException as exc:
                raise ServerUnreachable(
                    f"download of {what} broke after {written} bytes ({type(exc).__name__})") from exc
        return written

    def _send(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        try:
            response = self.session.request(method, self.base_uri + path, timeout=self.deadline.timeout(),
                                            stream=True, **kwargs)
        except requests.exceptions.SSLError as exc:
            raise RegistryError(f"TLS verification failed for {self.base_uri}: {exc}") from exc
        except requests.exceptions.RequestException as exc:
            raise ServerUnreachable(f"cannot reach {self.base_uri} ({type(exc).__name__}); "
                                    f"{start_hint(self.base_uri, self.server_options)}") from exc
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


def backoff_s(attempt: int, retry_after: str | None = None) -> float:
    """Seconds before try ``attempt + 2`` after a busy answer: a random share of a doubling cap (devices that
    failed together do not come back together), at least the server's Retry-After (in seconds) up to the cap."""
    wait = random.uniform(0, min(_BACKOFF_CAP_S, _BACKOFF_FIRST_S * 2 ** (attempt + 1)))
    if retry_after and retry_after.strip().isdigit():
        wait = max(wait, min(_BACKOFF_CAP_S, float(retry_after)))
    return wait


def start_hint(uri: str, options: str = "") -> str:
    """How to start a server where ``uri`` points (its own host and port, scripts/server.sh's ``options`` too),
    or point elsewhere."""
    parts = urlsplit(uri)
    host = parts.hostname or "?"
    try:
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme, 80)
    except ValueError:  # a port that is no number: nothing can listen there
        return f"fix the port in {redact_uri(uri)} or set MLFLOW_TRACKING_URI"
    where = f"[{host}]" if ":" in host else host
    extra = f" {options}" if options else ""
    if parts.scheme == "https":
        return (f"start the server behind the TLS front that answers on {where}:{port}, "
                "or set MLFLOW_TRACKING_URI")
    if host in _LOOPBACK:
        host_option = "" if host in ("127.0.0.1", "localhost") else f" --host {host}"
        return f"start it (scripts/server.sh start{extra}{host_option} --port {port}) or set MLFLOW_TRACKING_URI"
    # MLflow answers a name in the Host header only when it is allowed; an address it answers anyway.
    allowed = "" if _is_address(host) else f" --allowed-hosts {host},{host}:{port}"
    return (f"start it on {where} (there: scripts/server.sh start{extra} --host 0.0.0.0 --port {port}{allowed}) "
            "or set MLFLOW_TRACKING_URI")


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def check_server(uri: str, timeout_s: float = 5.0) -> None:
    """Fail fast with ServerUnreachable when an http(s) tracking server does not answer /health."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        requests.get(uri.rstrip("/") + "/health", timeout=timeout_s, verify=tls_verify_from_env()).raise_for_status()
    except requests.RequestException as exc:
        raise ServerUnreachable(
            f"MLflow tracking server {redact_uri(uri)} is not reachable ({type(exc).__name__}): {start_hint(uri)}"
        ) from exc
