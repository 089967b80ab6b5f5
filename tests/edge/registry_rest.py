"""Register device bundles (the checked-in fixtures beside this file) on an MLflow server through its REST API.

The device's transport (edge/transport.py), no mlflow: the edge tests (in the edge tier's venv and
the ARM roots), bench/ and scripts/check-arm.sh register the same way, from a checkout.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlparse

from edge import contract
from edge.bundle import read_labels, sha256_file
from edge.registry_client import experiment_id
from edge.transport import Deadline, Refused, Transport

FIXTURES = Path(__file__).resolve().parent / "fixtures"
EXPERIMENT = "edgeq-edge-tests"
_API = "/api/2.0/mlflow/"
_TIMEOUT_S = 30.0
_JSON_CAP_BYTES = 256 << 20  # a test reads whole runs and searches


class RestError(RuntimeError):
    """The server answered a request with an error."""


@dataclass(frozen=True)
class Registered:
    """A model version registered here."""

    name: str
    version: str
    run_id: str


def fixture_bundle(variant: str) -> Path:
    """The checked-in bundle directory of ``variant`` (read-only: copy it before changing anything)."""
    path = FIXTURES / variant
    if not (path / contract.MODEL_FILE).is_file():
        raise FileNotFoundError(f"no fixture bundle for {variant!r} in {FIXTURES}: run scripts/make_edge_fixtures.py")
    return path


def fixture_variants() -> tuple[str, ...]:
    return tuple(sorted(_registry_json()["variants"]))


def fixture_tags(variant: str) -> dict[str, str]:
    """The version tags the pipeline would register for the fixture of ``variant``."""
    return dict(_registry_json()["variants"][variant]["tags"])


def fixture_metrics(variant: str) -> dict[str, float]:
    """The run metrics the pipeline would log for the fixture of ``variant``."""
    return {k: float(v) for k, v in _registry_json()["variants"][variant]["metrics"].items()}


def _registry_json() -> dict[str, Any]:
    return json.loads((FIXTURES / "registry.json").read_text(encoding="utf-8"))


def copy_bundle(variant: str, dest: Path) -> Path:
    """A writable copy of the fixture bundle of ``variant`` at ``dest``."""
    shutil.copytree(fixture_bundle(variant), dest)
    return dest


def disagreeing_bundle(variant: str, dest: Path) -> Path:
    """A copy of the fixture of ``variant`` that is internally consistent (sha256 and manifest right)
    but whose model disagrees with its registered accuracy: every sample label is shifted by one class."""
    import numpy as np

    bundle = copy_bundle(variant, dest)
    with np.load(bundle / contract.SAMPLE_FILE) as data:
        images, labels = data["images"], data["labels"]
    np.savez_compressed(bundle / contract.SAMPLE_FILE, images=images, labels=(labels + 1) % len(read_labels(bundle)))
    rewrite_manifest(bundle)
    return bundle


def rewrite_manifest(directory: Path) -> dict[str, Any]:
    """Recompute manifest.json from the files now in ``directory`` (keeps its other keys); returns it."""
    path = directory / contract.MANIFEST_FILE
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    names = set(manifest.get("files", {})) | {contract.MODEL_FILE, contract.LABELS_FILE, contract.SAMPLE_FILE}
    manifest["files"] = {name: sha256_file(directory / name) for name in sorted(names) if (directory / name).is_file()}
    manifest["labels"] = read_labels(directory)
    path.write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


class MlflowRest:
    """The few REST calls made here on the tracking server at ``uri``."""

    def __init__(self, uri: str):
        self.http = Transport(uri, deadline=Deadline(None, _TIMEOUT_S), json_cap_bytes=_JSON_CAP_BYTES)

    def call(self, method: str, endpoint: str, *, ok_codes: tuple[str, ...] = (), **kwargs: Any) -> dict[str, Any]:
        """``endpoint`` below /api/2.0/mlflow/; an error whose code is in ``ok_codes`` returns {}."""
        try:
            return self.http.json(method, _API + endpoint, **kwargs)
        except Refused as exc:
            if exc.error_code in ok_codes:
                return {}
            raise RestError(f"{method} {endpoint}: {exc}") from None

    # --- writing ---------------------------------------------------------------------

    def experiment_id(self, name: str = EXPERIMENT) -> str:
        """Get or create the experiment ``name``."""
        return experiment_id(self.http, name)

    def create_run(self, experiment_id: str, tags: dict[str, str] | None = None) -> tuple[str, str]:
        """A new run; returns (run_id, artifact_uri)."""
        body = {"experiment_id": experiment_id, "start_time": int(time.time() * 1000),
                "tags": [{"key": k, "value": str(v)} for k, v in (tags or {}).items()]}
        info = self.call("POST", "runs/create", json=body)["run"]["info"]
        return info["run_id"], info["artifact_uri"]

    def upload_artifacts(self, artifact_uri: str, directory: Path, artifact_path: str = contract.ARTIFACT_DIR) -> None:
        """PUT every file of ``directory`` to ``<run artifacts>/<artifact_path>/`` through the served-artifacts API."""
        parsed = urlparse(artifact_uri)
        if parsed.scheme != "mlflow-artifacts":
            raise RestError(f"run artifacts at {artifact_uri!r}: start the server with --artifacts-destination")
        base = f"/api/2.0/mlflow-artifacts/artifacts/{parsed.path.strip('/')}/{artifact_path}"
        for path in sorted(p for p in Path(directory).iterdir() if p.is_file()):
            self.http.put(f"{base}/{quote(path.name)}", path.read_bytes())

    def log_metrics(self, run_id: str, metrics: dict[str, float]) -> None:
        ts = int(time.time() * 1000)
        self.call("POST", "runs/log-batch", json={
            "run_id": run_id, "metrics": [{"key": k, "value": float(v), "timestamp": ts, "step": 0} for k, v in metrics.items()]})

    def finish_run(self, run_id: str) -> None:
        self.call("POST", "runs/update", json={"run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})

    def ensure_registered_model(self, name: str) -> None:
        self.call("POST", "registered-models/create", json={"name": name}, ok_codes=("RESOURCE_ALREADY_EXISTS",))

    def create_version(self, name: str, source: str, run_id: str, tags: dict[str, str]) -> str:
        body = {"name": name, "source": source, "run_id": run_id,
                "tags": [{"key": k, "value": str(v)} for k, v in tags.items()]}
        return str(self.call("POST", "model-versions/create", json=body)["model_version"]["version"])

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.call("POST", "registered-models/alias", json={"name": name, "alias": alias, "version": str(version)})

    def delete_alias(self, name: str, alias: str) -> None:
        self.call("DELETE", "registered-models/alias", params={"name": name, "alias": alias})

    def delete_run(self, run_id: str) -> None:
        self.call("POST", "runs/delete", json={"run_id": run_id})

    # --- reading ---------------------------------------------------------------------

    def run(self, run_id: str) -> dict[str, Any]:
        return self.call("GET", "runs/get", params={"run_id": run_id})["run"]

    def run_metrics(self, run_id: str) -> dict[str, float]:
        """Latest value of every metric of the run."""
        return {m["key"]: float(m["value"]) for m in self.run(run_id).get("data", {}).get("metrics", [])}

    def run_tags(self, run_id: str) -> dict[str, str]:
        return {t["key"]: t.get("value", "") for t in self.run(run_id).get("data", {}).get("tags", [])}

    def model_version(self, name: str, version: str) -> dict[str, Any]:
        return self.call("GET", "model-versions/get", params={"name": name, "version": str(version)})["model_version"]

    def version_tags(self, name: str, version: str) -> dict[str, str]:
        return {t["key"]: t.get("value", "") for t in self.model_version(name, version).get("tags", [])}

    def version_run_id(self, name: str, version: str) -> str:
        return self.model_version(name, version)["run_id"]


def register_bundle(rest: MlflowRest, name: str, bundle: Path, tags: dict[str, str], metrics: dict[str, float],
                    alias: str | None = None, experiment: str = EXPERIMENT) -> Registered:
    """Register ``bundle`` as a new version of ``name`` whose source is a run of its own holding ``metrics``.

    Like the pipeline: the run's artifacts hold the bundle under ``model/``, the version's
    source is that directory and carries ``tags``; ``alias`` (if given) then points at it.
    """
    run_id, artifact_uri = rest.create_run(rest.experiment_id(experiment),
                                           {contract.TAG_VARIANT: tags.get(contract.TAG_VARIANT, "")})
    rest.upload_artifacts(artifact_uri, bundle)
    if metrics:
        rest.log_metrics(run_id, metrics)
    rest.finish_run(run_id)
    rest.ensure_registered_model(name)
    version = rest.create_version(name, f"{artifact_uri}/{contract.ARTIFACT_DIR}", run_id, tags)
    if alias:
        rest.set_alias(name, alias, version)
    return Registered(name, version, run_id)


def register_fixture(rest: MlflowRest, name: str, variant: str, alias: str | None = contract.DEFAULT_ALIAS,
                     bundle: Path | None = None, tags: dict[str, str] | None = None,
                     metrics: dict[str, float] | None = None) -> Registered:
    """Register the fixture of ``variant`` (or ``bundle``, tagged as that variant) under ``name``.

    Tags and metrics are the fixture's, with ``tags``/``metrics`` overriding single keys.
    With another ``bundle`` its model's sha256 and size replace the fixture's before the
    overrides, so an internally consistent bundle registers consistently unless a test
    says otherwise.
    """
    all_tags = fixture_tags(variant)
    if bundle is not None:
        model = Path(bundle) / contract.MODEL_FILE
        all_tags[contract.TAG_SHA256] = sha256_file(model)
        all_tags[contract.TAG_SIZE_BYTES] = str(model.stat().st_size)
    all_tags.update(tags or {})
    all_metrics = {**fixture_metrics(variant), **(metrics or {})}
    return register_bundle(rest, name, Path(bundle) if bundle is not None else fixture_bundle(variant),
                           all_tags, all_metrics, alias)
