"""Registered model versions: one per variant (and the Keras baseline), with the tags devices read."""
from __future__ import annotations

from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from edge import contract


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


def register_version(client: MlflowClient, name: str, run_id: str, tags: dict[str, str], description: str) -> str:
    """Register the run's ``model/`` artifact directory as a new version; returns its number."""
    source = f"{client.get_run(run_id).info.artifact_uri}/{contract.ARTIFACT_DIR}"
    mv = client.create_model_version(
        name, source=source, run_id=run_id, tags={k: str(v)[:5000] for k, v in tags.items()}, description=description
    )
    return str(mv.version)


def versions_of_run(client: MlflowClient, name: str, run_id: str) -> list[str]:
    """Versions of ``name`` whose source run is ``run_id``."""
    return [mv.version for mv in client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")]
