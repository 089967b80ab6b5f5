"""Configuration of a pipeline run: what data, what model, how to train and quantize."""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from edge.contract import SELECTIVE, VARIANTS

DATASETS = ("cats_vs_dogs", "digits")  # or a path to an image folder
MODELS = ("efficientnet_b0", "tiny_cnn")
WEIGHTS = ("imagenet", "none")
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
    batch_size: int = 16
    learning_rate: float = 1e-4


@dataclass(frozen=True)
class QuantConfig:
    calibration_images: int = 200
    qat_epochs: int = 2
    qat_learning_rate: float = 1e-5
    sample_size: int = 32
    # int8 losing more accuracy points than this also gets the selective variant.
    selective_if_drop_above: float = 1.0


def variants_for(quant: str) -> tuple[str, ...]:
    """'all' -> every variant; otherwise fp32 (the reference) plus the one asked for."""
    if quant == "all":
        return VARIANTS
    return ("fp32",) if quant == "fp32" else ("fp32", quant)


def baseline_key(data: DataConfig, train: TrainConfig, data_fingerprint: str) -> str:
    """Identity of a trained baseline: same key, same model; reused across runs."""
    payload = {"data": asdict(data) | {"min_test_images": None, "data_dir": None}, "train": asdict(train), "fingerprint": data_fingerprint}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:32]
