"""Find a trained baseline to reuse, or train one in its own child run."""
from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import keras
import mlflow
from mlflow.tracking import MlflowClient

from edge import contract
from edge.bundle import labels_text
from steps import data as data_mod
from steps import distribute, stop
from steps import model as model_mod
from steps.config import DataConfig, TrainConfig
from steps.train import keras_accuracy, train


@dataclass(frozen=True)
class Baseline:
    model: keras.Model
    run_id: str
    accuracy: float
    size_bytes: int
    reused: bool


@dataclass(frozen=True)
class Found:
    run_id: str
    model_id: str  # the registered baseline version's logged model: what is loaded


def find(client: MlflowClient, experiment_id: str, key: str) -> Found | None:
    """The newest registered baseline with this key whose run is in this experiment, if any.

    Found through registered versions, not run tags: on a team server a device user may
    write the pipeline's runs (tags, artifacts), but neither the registry nor a logged model.
    """
    versions = client.search_model_versions(f"tags.`{contract.TAG_BASELINE_KEY}` = '{key}'",
                                            order_by=["creation_timestamp DESC"])
    for mv in versions:
        model_id = logged_model_id(mv)
        if model_id and mv.run_id and client.get_run(mv.run_id).info.experiment_id == experiment_id:
            return Found(mv.run_id, model_id)
    return None


def logged_model_id(mv) -> str | None:
    """The logged model a version was registered from (its source is ``models:/<model_id>``)."""
    source = mv.source or ""
    return getattr(mv, "model_id", None) or (source.removeprefix("models:/") if source.startswith("models:/m-") else None)


def load(client: MlflowClient, found: Found) -> Baseline:
    """The baseline's logged model, read from a temporary copy that is gone when this returns."""
    import mlflow.keras

    run = client.get_run(found.run_id)
    with tempfile.TemporaryDirectory(prefix="edgeq-baseline-") as tmp:
        location = client.get_logged_model(found.model_id).artifact_location
        local = mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=tmp, tracking_uri=client.tracking_uri)
        model = mlflow.keras.load_model(local)
    return Baseline(
        model=model,
        run_id=found.run_id,
        accuracy=run.data.metrics[contract.M_ACCURACY],
        size_bytes=int(run.data.metrics[contract.M_SIZE]),
        reused=True,
    )


class _EpochLogger(keras.callbacks.Callback):
    def on_epoch_end(self, epoch: int, logs: dict | None = None) -> None:
        mlflow.log_metrics({k: float(v) for k, v in (logs or {}).items()}, step=epoch)


def train_new(splits: data_mod.Splits, data: DataConfig, cfg: TrainConfig, key: str, code_fingerprint: str,
              work: Path) -> Baseline:
    """Train in a child run that logs params, per-epoch metrics and the ``.keras`` file."""
    with mlflow.start_run(run_name=contract.BASELINE, nested=True) as run, stop.failure_reason():
        mlflow.set_tags({contract.TAG_BASELINE_KEY: key, contract.TAG_ROLE: contract.ROLE_BASELINE})
        strategy = distribute.strategy(cfg.distribute)
        replicas = strategy.num_replicas_in_sync
        mlflow.log_params({**asdict(cfg), "dataset": data.dataset, "image_size": data.image_size, "seed": data.seed,
                           "data_fingerprint": splits.info.fingerprint, "code_fingerprint": code_fingerprint,
                           "replicas": replicas, "global_batch_size": cfg.batch_size * replicas})
        keras.utils.set_random_seed(data.seed)
        with strategy.scope():
            model = model_mod.build(cfg, len(splits.info.labels), data.image_size)
        train(model, splits, data, cfg, callbacks=[_EpochLogger()])
        accuracy = keras_accuracy(model, splits, cfg.batch_size)
        bundle = work / contract.BASELINE
        bundle.mkdir(parents=True, exist_ok=True)
        path = bundle / contract.KERAS_FILE
        model.save(path)
        (bundle / contract.LABELS_FILE).write_text(labels_text(splits.info.labels), encoding="utf-8")
        size = path.stat().st_size
        mlflow.log_metrics({contract.M_ACCURACY: accuracy, contract.M_SIZE: size, contract.M_DROP: 0.0, contract.M_SIZE_RATIO: 1.0})
        mlflow.log_artifacts(str(bundle), contract.ARTIFACT_DIR)
        return Baseline(model=model, run_id=run.info.run_id, accuracy=accuracy, size_bytes=size, reused=False)
