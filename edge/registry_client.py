"""A small client for the MLflow REST API: just what a device needs.

Resolve a model version by alias or number, download its files, log metrics and
tags to a run, keep a fleet run. Everything goes through edge/transport.py (credentials,
TLS, caps, deadline, the server's clock, errors), so a device needs neither TensorFlow nor mlflow.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edge import contract
from edge.transport import (
    AuthError, Credentials, Deadline, Nonsense, NotFound, Refused, RegistryError, ServerUnreachable, TooLarge, Transport,
    backoff_s, check_server, check_tracking_uri, redact_uri, tls_verify_from_env,
)

__all__ = [  # with the transport's parts the device's modules import from here
    "AuthError", "Credentials", "Deadline", "ModelVersion", "Nonsense", "NotFound", "Refused", "RegistryClient",
    "RegistryError", "ServerUnreachable", "TooLarge", "backoff_s", "check_server", "check_tracking_uri",
    "experiment_id", "model_tags", "redact_uri", "tls_verify_from_env",
]
_API = "/api/2.0/mlflow/"
_VERSIONS_HINT = "`edgeq versions {name}` lists its versions and aliases"
_NO_SUCH = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # what MLflow answers for a name it does not know


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


class RegistryClient:
    """What a device asks of the MLflow tracking server at ``base_uri`` (http or https)."""

    def __init__(self, base_uri: str, credentials: Credentials | None = None, verify: bool | str = True,
                 deadline: Deadline | None = None):
        self.http = Transport(base_uri, credentials, verify, deadline)

    @property
    def base_uri(self) -> str:
        return self.http.base_uri

    @property
    def deadline(self) -> Deadline:
        return self.http.deadline

    def _json(self, method: str, endpoint: str, **kwargs: Any) -> dict[str, Any]:
        return self.http.json(method, _API + endpoint, **kwargs)

    def version_by_alias(self, name: str, alias: str) -> ModelVersion:
        try:
            data = self._json("GET", "registered-models/alias", params={"name": name, "alias": alias})
        except Refused as exc:  # MLflow says INVALID_PARAMETER_VALUE for an alias it does not know
            raise self._missing(name, "alias", alias, "--alias", exc) from None
        return ModelVersion.from_json(data.get("model_version"), name)

    def version(self, name: str, version: str) -> ModelVersion:
        try:
            data = self._json("GET", "model-versions/get", params={"name": name, "version": version})
        except Refused as exc:
            raise self._missing(name, "version", version, "--model-version", exc) from None
        return ModelVersion.from_json(data.get("model_version"), name)

    def _missing(self, name: str, kind: str, asked: str, option: str, exc: Refused) -> Refused:
        """One line for a model, alias or version the server does not have: which one, and how to find the right one.

        ``exc`` itself when the server's refusal was not MLflow's "no such thing", or the model has that alias."""
        if exc.error_code not in _NO_SUCH:
            return exc
        try:
            model = self._json("GET", "registered-models/get", params={"name": name}).get("registered_model")
        except NotFound:
            return self._no_model(name, exc)
        except RegistryError:  # the server is gone again: say what was asked
            model = None
        aliases = model.get("aliases") if isinstance(model, dict) else None
        known = {str(a.get("alias")): str(a.get("version")) for a in aliases if isinstance(a, dict)} \
            if isinstance(aliases, list) else {}
        if kind == "alias" and asked in known:
            return exc
        listed = ", ".join(f"{a} → v{v}" for a, v in known.items())
        what = f"alias {asked!r}" if kind == "alias" else f"version {asked}"
        return NotFound(f"model {name!r} on {self.base_uri} has no {what}{f' (its aliases: {listed})' if listed else ''}"
                        f": check {option}; {_VERSIONS_HINT.format(name=name)}", exc.error_code, exc.detail, exc.status)

    def _no_model(self, name: str, exc: Refused) -> NotFound:
        return NotFound(f"{self.base_uri} has no model {name!r}: check --model ({_VERSIONS_HINT.format(name='MODEL')} "
                        "once the name is right)", exc.error_code, exc.detail, exc.status)

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """``(timestamp_ms, value)`` of every point of one metric of one run: its size never grows with the fleet."""
        data = self._json("GET", "metrics/get-history", params={"run_id": run_id, "metric_key": key})
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
        return self.http.download("/model-versions/get-artifact", dest, max_bytes, filename,
                                  params={"name": mv.name, "version": mv.version, "path": filename})

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
        self._json("POST", "runs/log-batch", json=body)

    def model_tags(self, name: str) -> dict[str, str]:
        """The registered model's tags (where the operator records, e.g., the fleet experiment's id)."""
        try:
            return model_tags(self.http, name)
        except NotFound as exc:
            raise self._no_model(name, exc) from None

    def experiment_id(self, name: str) -> str:
        """The id of experiment ``name``, created when missing (two devices may race: both end with the same id)."""
        return experiment_id(self.http, name)

    def find_run(self, experiment_id: str, tags: dict[str, str], kind: str = "tags") -> str | None:
        """The oldest run of the experiment carrying all ``tags`` (``kind="params"``: all those params), or None."""
        clauses = " and ".join(f"{kind}.`{k}` = '{v}'" for k, v in tags.items())
        data = self._json("POST", "runs/search", json={
            "experiment_ids": [experiment_id], "filter": clauses, "max_results": 1, "order_by": ["attributes.start_time ASC"],
        })
        runs = data.get("runs", [])
        if not isinstance(runs, list):
            raise Nonsense("runs/search without a runs list")
        return _field(runs[0], "info", "run_id") if runs else None

    def create_run(self, experiment_id: str, run_name: str, tags: dict[str, str]) -> str:
        return self.start_run(experiment_id, run_name, tags, int(time.time() * 1000))

    # -- device evidence layout ------------------------------------------------------------------------------------

    def start_run(self, experiment_id: str, run_name: str, tags: dict[str, str], start_time_ms: int) -> str:
        """``create_run`` with the start time given (the server-corrected one, edge/clock.py)."""
        data = self._json("POST", "runs/create", json={
            "experiment_id": experiment_id, "run_name": run_name, "start_time": int(start_time_ms),
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        })
        return _field(data, "run", "info", "run_id")

    def finish_run(self, run_id: str, end_time_ms: int) -> None:
        """Mark a run FINISHED at ``end_time_ms``: a device run's end time is its "last seen", no history row."""
        self._json("POST", "runs/update", json={"run_id": run_id, "status": "FINISHED", "end_time": int(end_time_ms)})


def model_tags(http: Transport, name: str) -> dict[str, str]:
    """The tags of registered model ``name`` (NotFound when there is none)."""
    data = http.json("GET", _API + "registered-models/get", params={"name": name})
    model = data.get("registered_model")
    if not isinstance(model, dict) or model.get("name") != name:
        raise Nonsense(f"registered-models/get without the registered model {name!r}")
    tags = model.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(t, dict) and isinstance(t.get("key"), str)
                                             and isinstance(t.get("value", ""), str) for t in tags):
        raise Nonsense("registered model tags that are not key/value strings")
    return {t["key"]: t.get("value", "") for t in tags}


def experiment_id(http: Transport, name: str) -> str:
    """The id of experiment ``name``, created when missing (whoever races to create it ends with the same id).

    Created, or found without a kind, it gets MLflow's training layout (contract.TAG_EXPERIMENT_KIND)."""
    kind = {"key": contract.TAG_EXPERIMENT_KIND, "value": contract.EXPERIMENT_KIND_TRAINING}

    def by_name() -> str:
        found = http.json("GET", _API + "experiments/get-by-name", params={"experiment_name": name})
        found_id = _field(found, "experiment", "experiment_id")
        tags = found["experiment"].get("tags", [])
        if isinstance(tags, list) and not any(isinstance(t, dict) and t.get("key") == kind["key"] for t in tags):
            try:  # the layout is cosmetic: a device without the right to tag still sends its heartbeat
                http.json("POST", _API + "experiments/set-experiment-tag", json={"experiment_id": found_id, **kind})
            except (Refused, AuthError):
                pass
        return found_id

    try:
        return by_name()
    except NotFound:
        pass
    try:
        return _field(http.json("POST", _API + "experiments/create", json={"name": name, "tags": [kind]}),
                      "experiment_id")
    except Refused:  # RESOURCE_ALREADY_EXISTS: another caller created it meanwhile
        return by_name()


def _field(data: Any, *path: str) -> str:
    """``data[path[0]][path[1]]…`` as a non-empty string, or Nonsense naming the missing field."""
    for key in path:
        if not isinstance(data, dict) or key not in data:
            raise Nonsense(f"no {'.'.join(path)} in the answer")
        data = data[key]
    if not isinstance(data, str) or not data:
        raise Nonsense(f"{'.'.join(path)} is not a string")
    return data
