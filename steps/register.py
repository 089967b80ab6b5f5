"""Registered model versions: one per variant (and the Keras baseline), with the tags devices read."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_MODEL_VERSIONS

from edge import contract, signing
from steps import mlflow_model


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
                     model_id: str) -> str:
    """Register the logged model ``model_id`` (of run ``run_id``) as a new version; returns its number.

    The version's source is ``models:/<model_id>``: MLflow loads it as a model, and a device's
    ``get-artifact`` reads the bundle files at the root of the same directory. The logged model
    then names the version (``link_logged_model``), which is how MLflow's UI knows it is registered.
    """
    mv = client.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, tags={k: str(v) for k, v in tags.items()},
        description=description, model_id=model_id,
    )
    link_logged_model(client, model_id, name, str(mv.version))
    return str(mv.version)


def link_logged_model(client: MlflowClient, model_id: str, name: str, version: str) -> None:
    """Record ``name`` v``version`` in the logged model's ``mlflow.modelVersions`` tag, once.

    MLflow's UI reads only this tag to show a logged model as registered (its "Registered
    models" column, no "Not registered" badge); the registry does not store the model id of a
    version. An MLflow 3 server writes the tag when create_model_version carries ``model_id``;
    ``mlflow.register_model`` writes it again from the client for servers that do not, and so does this.
    """
    try:
        linked = json.loads(client.get_logged_model(model_id).tags.get(MLFLOW_MODEL_VERSIONS) or "[]")
    except ValueError:
        linked = []
    linked = [e for e in linked if isinstance(e, dict)] if isinstance(linked, list) else []
    if not any(e.get("name") == name and str(e.get("version")) == version for e in linked):
        client.set_logged_model_tags(model_id, {MLFLOW_MODEL_VERSIONS: json.dumps([*linked, {"name": name, "version": version}])})


def register_tflite(client: MlflowClient, name: str, run_id: str, tags: dict[str, str], description: str,
                    bundle: Path, signing_key: Ed25519PrivateKey | None = None) -> str:
    """A variant's local bundle → (signed) → logged model of ``run_id`` → registered version; returns its number.

    The bundle is the one this process wrote and evaluated, never a copy read back from the
    server (where a device user may write the run's artifacts). With ``signing_key`` its
    manifest is signed here, the signature travels into the logged model with the bundle,
    and the key's fingerprint becomes a version tag.
    """
    if signing_key is not None:
        tags = {**tags, contract.TAG_SIGNING_KEY_FINGERPRINT: signing.sign_manifest(bundle, signing_key)}
    info = mlflow_model.log_tflite(run_id, bundle, tags.get(contract.TAG_VARIANT, "tflite"), tags)
    return register_version(client, name, run_id, tags, description, info.model_id)


def register_keras(client: MlflowClient, name: str, run_id: str, model, example: np.ndarray, tags: dict[str, str],
                   description: str) -> str:
    """The baseline run's Keras model as a version: its logged model (Keras flavor), logged now if it has none."""
    experiment_id = client.get_run(run_id).info.experiment_id
    found = mlflow_model.logged_models_of_run(client, experiment_id, run_id)
    model_id = found[0] if found else mlflow_model.log_keras(run_id, model, example, tags).model_id
    return register_version(client, name, run_id, tags, description, model_id)


def identical_version(client: MlflowClient, name: str, tags: dict[str, str]) -> str | None:
    """The oldest version of ``name`` whose tags all equal ``tags`` (variant, model sha256, labels, input, the gate's
    sample size, the baseline run, signing key): the same device files, so registering again adds nothing.

    Compared on version tags only, which the registry holds: run tags may be written by a device user."""
    query = f"name = '{name}' and tags.`{contract.TAG_SHA256}` = '{tags[contract.TAG_SHA256]}'"
    for mv in sorted(client.search_model_versions(query), key=lambda mv: int(mv.version)):
        if all(mv.tags.get(k) == str(v) for k, v in tags.items()):
            return str(mv.version)
    return None


def versions_of_run(client: MlflowClient, name: str, run_id: str) -> list[str]:
    """Versions of ``name`` whose source run is ``run_id``."""
    return [mv.version for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")]
