"""The part of ``MlflowClient`` that ``edgeq`` uses, over MLflow's REST API with ``requests``: no mlflow import.

Importing mlflow costs ~3 s of every command's start-up on a small machine (it loads pandas, its
GenAI stack, FastAPI…), more than ``edgeq versions`` at 10,000 devices spends reading. Over an
http(s) tracking URI the commands use this client instead; it answers with objects of the same
shape as MlflowClient's (``run.info.run_id``, ``run.data.metrics``, ``mv.tags``, ``rm.aliases``,
``page.token``), so every reader works with either (the tests pass MlflowClient too), and raises
``ApiError`` carrying MLflow's ``error_code`` where MlflowClient raises ``MlflowException``.
Transport, credentials (MLflow's environment variables), TLS settings and the error mapping are
the device's (edge/transport.py), with a cap sized for an operator's pages. It satisfies
registry_tools.api.RegistryApi, as MlflowClient does.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Iterable
from urllib.parse import quote, urlparse

from edge.transport import Credentials, Deadline, NotFound, Refused, Transport, tls_verify_from_env
from registry_tools.api import RegistryApi

_API = "/api/2.0/mlflow/"
MODEL_VERSIONS_PAGE = 10_000  # what MlflowClient.search_model_versions asks for by default
_CREDENTIALS_HINT = "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN)"


class ViewType:
    """MLflow's run and experiment view types (the same integers as ``mlflow.entities.ViewType``)."""

    ACTIVE_ONLY, DELETED_ONLY, ALL = 1, 2, 3
    NAMES = {1: "ACTIVE_ONLY", 2: "DELETED_ONLY", 3: "ALL"}


class ApiError(Refused):
    """The server refused a request: ``error_code`` as MLflow names it (RESOURCE_DOES_NOT_EXIST, …)."""

    def __init__(self, error_code: str, message: str):
        super().__init__(f"{error_code}: {message}", error_code, message)
        self.message = message


def error_code(exc: BaseException) -> str | None:
    """MLflow's error code of a failed call, whether MlflowClient (MlflowException) or RestClient (ApiError) raised it."""
    code = getattr(exc, "error_code", None)
    return code if isinstance(code, str) else None


class Page(list):
    """One page of a search, with the token of the next (None after the last), like MLflow's PagedList."""

    def __init__(self, items: Iterable[Any], token: str | None):
        super().__init__(items)
        self.token = token or None


@dataclass(frozen=True)
class Metric:
    key: str
    value: float
    timestamp: int
    step: int = 0
    model_id: str | None = None


@dataclass(frozen=True)
class RunTag:
    key: str
    value: str


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    status: str
    start_time: int | None
    end_time: int | None
    run_name: str
    lifecycle_stage: str
    artifact_uri: str = ""


@dataclass(frozen=True)
class RunData:
    metrics: dict[str, float]
    tags: dict[str, str]
    params: dict[str, str]
    _metric_objs: list[Metric] = field(default_factory=list)  # MLflow's RunData keeps the timestamps here too


@dataclass(frozen=True)
class Run:
    info: RunInfo
    data: RunData


@dataclass(frozen=True)
class Experiment:
    experiment_id: str
    name: str
    lifecycle_stage: str


@dataclass(frozen=True)
class LoggedModel:
    model_id: str
    tags: dict[str, str]


@dataclass(frozen=True)
class ModelVersion:
    name: str
    version: str
    run_id: str | None
    source: str
    tags: dict[str, str]
    aliases: list[str]
    creation_timestamp: int
    last_updated_timestamp: int
    current_stage: str
    description: str
    status: str
    model_id: str | None = None


@dataclass(frozen=True)
class RegisteredModel:
    name: str
    aliases: dict[str, str]
    tags: dict[str, str]
    description: str
    creation_timestamp: int
    last_updated_timestamp: int


def _pairs(items: Any, key: str = "key", value: str = "value") -> dict[str, str]:
    return {i[key]: i.get(value, "") for i in items or [] if isinstance(i, dict) and key in i}


def _run(data: dict) -> Run:
    info, body = data.get("info") or {}, data.get("data") or {}
    points = [Metric(m["key"], float(m.get("value", 0.0)), int(m.get("timestamp", 0)), int(m.get("step", 0)))
              for m in body.get("metrics") or [] if isinstance(m, dict) and "key" in m]
    return Run(
        RunInfo(info.get("run_id") or info.get("run_uuid", ""), str(info.get("experiment_id", "")),
                info.get("status", ""), info.get("start_time"), info.get("end_time"), info.get("run_name", ""),
                info.get("lifecycle_stage", ""), info.get("artifact_uri", "")),
        RunData({m.key: m.value for m in points}, _pairs(body.get("tags")), _pairs(body.get("params")), points),
    )


def _experiment(data: dict) -> Experiment:
    return Experiment(str(data.get("experiment_id", "")), data.get("name", ""), data.get("lifecycle_stage", ""))


def _model_version(data: dict) -> ModelVersion:
    return ModelVersion(
        data.get("name", ""), str(data.get("version", "")), data.get("run_id") or None, data.get("source", ""),
        _pairs(data.get("tags")), list(data.get("aliases") or []), int(data.get("creation_timestamp", 0)),
        int(data.get("last_updated_timestamp", 0)), data.get("current_stage", ""), data.get("description", ""),
        data.get("status", ""), data.get("model_id") or None,
    )


def _registered_model(data: dict) -> RegisteredModel:
    return RegisteredModel(data.get("name", ""), _pairs(data.get("aliases"), "alias", "version"),
                           _pairs(data.get("tags")), data.get("description", ""),
                           int(data.get("creation_timestamp", 0)), int(data.get("last_updated_timestamp", 0)))


def _metric_json(m: Any) -> dict:
    out = {"key": m.key, "value": m.value, "timestamp": int(m.timestamp), "step": int(m.step or 0)}
    if getattr(m, "model_id", None):
        out["model_id"] = m.model_id
    return out


class RestClient:
    """MlflowClient's methods that edgeq calls, over REST, with MlflowClient's signatures and answer shapes."""

    json_cap_bytes = 256 << 20  # a page of 1,000 device runs is a few MB; an operator's machine can hold this

    def __init__(self, tracking_uri: str):
        # Each request gets the whole timeout: an operator's command has no run deadline, unlike the device.
        per_request = Deadline(None, float(os.environ.get("MLFLOW_HTTP_REQUEST_TIMEOUT", "120")))
        self.http = Transport(tracking_uri, Credentials.from_env(), tls_verify_from_env(), per_request,
                              self.json_cap_bytes, credentials_hint=_CREDENTIALS_HINT)

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        try:
            return self.http.json(method, path, **kwargs)
        except Refused as exc:  # an answer without MLflow's error code: what its status means
            code = exc.error_code or ("RESOURCE_DOES_NOT_EXIST" if isinstance(exc, NotFound) else "INVALID_PARAMETER_VALUE")
            raise ApiError(code, exc.detail or str(exc)) from None

    def _get(self, endpoint: str, **params: Any) -> dict[str, Any]:
        return self._json("GET", _API + endpoint, params={k: v for k, v in params.items() if v is not None})

    def _post(self, endpoint: str, body: dict[str, Any], method: str = "POST") -> dict[str, Any]:
        return self._json(method, _API + endpoint, json={k: v for k, v in body.items() if v is not None})

    # tracking
    def get_run(self, run_id: str) -> Run:
        return _run(self._get("runs/get", run_id=run_id).get("run") or {})

    def log_text(self, run_id: str, text: str, artifact_file: str) -> None:
        """``text`` as the run's artifact ``artifact_file``, on a server that serves artifacts (mlflow-artifacts:/)."""
        uri = self.get_run(run_id).info.artifact_uri
        parsed = urlparse(uri)
        if parsed.scheme != "mlflow-artifacts":
            raise ApiError("INVALID_PARAMETER_VALUE", f"the run's artifacts live at {uri or '?'}: only artifacts the "
                                                      "server serves (mlflow-artifacts:/) are written without mlflow")
        path = quote(f"{parsed.path.strip('/')}/{artifact_file}")
        self.http.put(f"/api/2.0/mlflow-artifacts/artifacts/{path}", text.encode("utf-8"))

    def search_runs(self, experiment_ids: list[str], filter_string: str = "", run_view_type: int = ViewType.ACTIVE_ONLY,
                    max_results: int = 1000, order_by: list[str] | None = None, page_token: str | None = None) -> Page:
        data = self._post("runs/search", {"experiment_ids": list(experiment_ids), "filter": filter_string,
                                          "run_view_type": ViewType.NAMES[int(run_view_type)], "max_results": max_results,
                                          "order_by": order_by or None, "page_token": page_token})
        return Page((_run(r) for r in data.get("runs") or []), data.get("next_page_token"))

    def search_experiments(self, view_type: int = ViewType.ACTIVE_ONLY, max_results: int = 1000,
                           page_token: str | None = None) -> Page:
        data = self._post("experiments/search", {"view_type": ViewType.NAMES[int(view_type)], "max_results": max_results,
                                                 "page_token": page_token})
        return Page((_experiment(e) for e in data.get("experiments") or []), data.get("next_page_token"))

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        try:
            found = self._get("experiments/get-by-name", experiment_name=name).get("experiment") or {}
        except ApiError as exc:
            if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return _experiment(found)

    def log_batch(self, run_id: str, metrics: Iterable[Any] = (), params: Iterable[Any] = (),
                  tags: Iterable[Any] = (), synchronous: bool | None = None) -> None:
        self._post("runs/log-batch", {"run_id": run_id, "metrics": [_metric_json(m) for m in metrics],
                                      "params": [{"key": p.key, "value": p.value} for p in params],
                                      "tags": [{"key": t.key, "value": t.value} for t in tags]})

    # logged models
    def get_logged_model(self, model_id: str) -> LoggedModel:
        info = (self._get(f"logged-models/{model_id}").get("model") or {}).get("info") or {}
        return LoggedModel(info.get("model_id", model_id), {t["key"]: t.get("value", "") for t in info.get("tags") or []})

    def set_logged_model_tags(self, model_id: str, tags: dict[str, str]) -> None:
        self._post(f"logged-models/{model_id}/tags", {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
                   method="PATCH")

    # model registry
    def get_registered_model(self, name: str) -> RegisteredModel:
        return _registered_model(self._get("registered-models/get", name=name).get("registered_model") or {})

    def get_model_version(self, name: str, version: str) -> ModelVersion:
        return _model_version(self._get("model-versions/get", name=name, version=str(version)).get("model_version") or {})

    def search_model_versions(self, filter_string: str | None = None, max_results: int = MODEL_VERSIONS_PAGE,
                              order_by: list[str] | None = None, page_token: str | None = None) -> Page:
        params = {"filter": filter_string, "max_results": max_results, "page_token": page_token}
        if order_by:
            params["order_by"] = order_by
        data = self._get("model-versions/search", **params)
        return Page((_model_version(mv) for mv in data.get("model_versions") or []), data.get("next_page_token"))

    def set_registered_model_alias(self, name: str, alias: str, version: str) -> None:
        self._post("registered-models/alias", {"name": name, "alias": alias, "version": str(version)})

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self._post("registered-models/set-tag", {"name": name, "key": key, "value": value})

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self._json("DELETE", _API + "registered-models/delete-tag", json={"name": name, "key": key})

    def create_registered_model(self, name: str, tags: dict[str, str] | None = None, description: str | None = None) -> RegisteredModel:
        body = {"name": name, "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()], "description": description}
        return _registered_model(self._post("registered-models/create", body).get("registered_model") or {})

    def get_experiment(self, experiment_id: str) -> Experiment:
        return _experiment(self._get("experiments/get", experiment_id=experiment_id).get("experiment") or {})

    def create_experiment(self, name: str, tags: dict[str, str] | None = None) -> str:
        body = {"name": name, "tags": [{"key": k, "value": v} for k, v in (tags or {}).items()]}
        return str(self._post("experiments/create", body).get("experiment_id", ""))

    def update_registered_model(self, name: str, description: str | None = None) -> None:
        self._post("registered-models/update", {"name": name, "description": description}, method="PATCH")

    def set_model_version_tag(self, name: str, version: str, key: str, value: str) -> None:
        self._post("model-versions/set-tag", {"name": name, "version": str(version), "key": key, "value": value})

    def delete_model_version_tag(self, name: str, version: str, key: str) -> None:
        self._json("DELETE", _API + "model-versions/delete-tag", json={"name": name, "version": str(version), "key": key})

    def transition_model_version_stage(self, name: str, version: str, stage: str,
                                       archive_existing_versions: bool = False) -> None:
        self._post("model-versions/transition-stage", {"name": name, "version": str(version), "stage": stage,
                                                       "archive_existing_versions": archive_existing_versions})


def metric(client: RegistryApi, key: str, value: float, timestamp: int, step: int = 0, model_id: str | None = None) -> Any:
    """A metric for ``client.log_batch``: MLflow's entity for MlflowClient, this module's for RestClient."""
    if isinstance(client, RestClient):
        return Metric(key, value, timestamp, step, model_id)
    from mlflow.entities import Metric as MlflowMetric

    return MlflowMetric(key, value, timestamp, step, model_id=model_id)


def tag(client: RegistryApi, key: str, value: str) -> Any:
    """A run tag for ``client.log_batch``, of the kind ``client`` takes."""
    if isinstance(client, RestClient):
        return RunTag(key, value)
    from mlflow.entities import RunTag as MlflowRunTag

    return MlflowRunTag(key, value)
