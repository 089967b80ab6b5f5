"""Configuration of a pipeline run: what data, what model, how to train and quantize."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

from edge import contract
from edge.contract import SELECTIVE, VARIANTS
from steps import fingerprint

DATASETS = ("cats_vs_dogs", "digits")  # or a path to an image folder
MODELS = ("efficientnet_b0", "tiny_cnn")
WEIGHTS = ("imagenet", "none")  # or a path to a weights file
DISTRIBUTE = ("auto", "off")  # auto: MirroredStrategy when several GPUs are visible
QUANT_CHOICES = VARIANTS + (SELECTIVE, "all")


@dataclass(frozen=True)
class DataConfig:
    dataset: str = "cats_vs_dogs"
    image_size: int = 224
    train_fraction: float = 0.7
    val_fraction: float = 0.2
    seed: int = 42
    min_test_images: int = 20
    data_dir: str | None = None

    @property
    def is_folder(self) -> bool:
        return self.dataset not in DATASETS


@dataclass(frozen=True)
class TrainConfig:
    model: str = "efficientnet_b0"
    weights: str = "imagenet"
    epochs: int = 15
    batch_size: int = 16  # per replica: the global batch is this × the number of replicas
    learning_rate: float = 1e-4
    distribute: str = "auto"


@dataclass(frozen=True)
class QuantConfig:
    calibration_images: int = 200
    qat_epochs: int = 2
    qat_learning_rate: float = 1e-5
    sample_size: int = 0  # 0: chosen from the accuracy budget (steps/sample_size.py)
    # int8 losing more accuracy points than this also gets the selective variant.
    selective_if_drop_above: float = 1.0


def variants_for(quant: str) -> tuple[str, ...]:
    """'all' -> every variant; otherwise fp32 (the reference) plus the one asked for."""
    if quant == "all":
        return VARIANTS
    return (contract.FP32,) if quant == contract.FP32 else (contract.FP32, quant)


def weights_file(cfg: TrainConfig) -> Path | None:
    """The local weights file ``weights`` names, or None for ``imagenet`` / ``none``."""
    return None if cfg.weights in WEIGHTS else Path(cfg.weights).expanduser()


def baseline_key(data: DataConfig, train: TrainConfig, data_fingerprint: str, code_fingerprint: str) -> str:
    """Identity of a trained baseline: same data, parameters, code and weights file, same model; reused across runs.

    Settings that change how, not what, is trained (where TFDS keeps its files, the
    distribution strategy) stay out; a weights file counts by its content, not its path.
    """
    path = weights_file(train)
    weights = train.weights if path is None else f"sha256:{fingerprint.file_sha256(path)}"
    payload = {
        "data": asdict(data) | {"min_test_images": None, "data_dir": None},
        "train": asdict(train) | {"weights": weights, "distribute": None},
        "fingerprint": data_fingerprint,
        "code": code_fingerprint,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
