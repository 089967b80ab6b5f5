"""Registered model versions: one per variant (and the Keras baseline), with the tags devices read."""
from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mlflow.exceptions import MlflowException
from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository
from mlflow.tracking import MlflowClient

from edge import contract, signing


def registered_model_name(dataset: str, model: str) -> str:
    """One registered model per (dataset, model): ``edgeq-digits-tiny_cnn``."""
    slug = Path(dataset).name if "/" in dataset or dataset.startswith(".") else dataset
    clean = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in slug)
    return f"edgeq-{clean}-{model}"


def ensure_registered_model(client: MlflowClient, name: str, description: str) -> None:
    try:
        client.create_registered_model(name, description=description)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise


def register_version(client: MlflowClient, name: str, run_id: str, tags: dict[str, str], description: str,
                     signing_key: Ed25519PrivateKey | None = None) -> str:
    """Register the run's ``model/`` artifact directory as a new version; returns its number.

    With ``signing_key`` the directory's manifest is signed first: the signature file lands
    next to it and the key's fingerprint becomes a version tag.
    """
    source = f"{client.get_run(run_id).info.artifact_uri}/{contract.ARTIFACT_DIR}"
    if signing_key is not None:
        tags = {**tags, contract.TAG_SIGNING_KEY_FINGERPRINT: sign_artifact_dir(source, signing_key)}
    mv = client.create_model_version(
        name, source=source, run_id=run_id, tags={k: str(v)[:5000] for k, v in tags.items()}, description=description
    )
    return str(mv.version)


def sign_artifact_dir(artifact_uri: str, key: Ed25519PrivateKey) -> str:
    """Sign the manifest stored at ``artifact_uri`` and store the signature beside it; returns the fingerprint."""
    with tempfile.TemporaryDirectory() as tmp:
        mlflow.artifacts.download_artifacts(artifact_uri=f"{artifact_uri}/{contract.MANIFEST_FILE}", dst_path=tmp)
        fingerprint = signing.sign_manifest(tmp, key)
        get_artifact_repository(artifact_uri).log_artifact(str(Path(tmp) / contract.SIGNATURE_FILE))
    return fingerprint


def versions_of_run(client: MlflowClient, name: str, run_id: str) -> list[str]:
    """Versions of ``name`` whose source run is ``run_id``."""
    return [mv.version for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")]
