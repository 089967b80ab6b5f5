"""Model builders: the article's EfficientNet-B0 classifier and a tiny CNN for offline use.

Builders take the Keras module as an argument so the QAT worker can build the same
architecture with ``tf_keras``. Models are flat functional graphs (no nested model),
which quantization-aware training needs in order to annotate individual layers.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from steps.config import MODELS, TrainConfig, weights_file
from steps.data import host_reachable

_WEIGHTS_HOST = ("storage.googleapis.com", 443)
_EFFICIENTNET_WEIGHTS = "efficientnetb0_notop.h5"
_WEIGHTS_SUFFIXES = (".h5", ".keras")  # .weights.h5 (Keras 3), .h5 (Keras' own downloads), .keras
# A tiny model trains for few steps: faster-moving BatchNorm statistics keep
# inference-mode accuracy from lagging training accuracy after a handful of epochs.
_TINY_BN_MOMENTUM = 0.9


class ModelError(ValueError):
    """The model cannot be built as asked; the message says why and what to do."""


def check(cfg: TrainConfig) -> None:
    """Fail fast, before any data is loaded, on a model or weights that cannot be had."""
    if cfg.model not in MODELS:
        raise ModelError(f"unknown model {cfg.model!r}: choose one of {', '.join(MODELS)}")
    if cfg.weights != "none" and cfg.model == "tiny_cnn":
        raise ModelError("tiny_cnn has no pretrained weights: use -P weights=none")
    path = weights_file(cfg)
    if path is not None:
        _check_weights_file(path)
    elif cfg.weights == "imagenet":
        cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / _EFFICIENTNET_WEIGHTS
        if not cached.exists() and not host_reachable(*_WEIGHTS_HOST):
            raise ModelError(
                f"ImageNet weights are not cached ({cached}) and {_WEIGHTS_HOST[0]} is unreachable: "
                f"use -P weights=none, or download {_EFFICIENTNET_WEIGHTS} elsewhere and pass its path as -P weights=PATH"
            )


def _check_weights_file(path: Path) -> None:
    """The file exists and loads into the backbone (built small: EfficientNet's weights do not depend on image size)."""
    if not path.is_file():
        raise ModelError(f"weights file {path} does not exist: use imagenet, none, or the path of a weights file "
                         f"(for example {_EFFICIENTNET_WEIGHTS}, downloaded where the Keras host is reachable)")
    if not path.name.endswith(_WEIGHTS_SUFFIXES):
        raise ModelError(f"weights file {path} is not a Keras weights file: give a {' or '.join(_WEIGHTS_SUFFIXES)} file")
    try:
        _backbone(keras_module(), str(path), (32, 32, 3))
    except (ValueError, OSError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"weights file {path} does not fit EfficientNet-B0 without its top ({reason[:200]}): "
                         f"give {_EFFICIENTNET_WEIGHTS} or weights saved from that backbone") from exc


def keras_module() -> ModuleType:
    import keras

    return keras


def _backbone(keras: ModuleType, weights: str | None, shape: tuple[int, int, int]):
    return keras.applications.EfficientNetB0(include_top=False, pooling="max", weights=weights, input_shape=shape)


def _head(keras: ModuleType, x, num_classes: int, bn_momentum: float = 0.99):
    x = keras.layers.Dense(512, activation="relu")(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum)(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.layers.Dense(num_classes, activation="softmax")(x)


def build(cfg: TrainConfig, num_classes: int, image_size: int, keras: ModuleType | None = None):
    """A classifier taking pixel images (0..255) of ``image_size`` and returning class probabilities."""
    if keras is None:
        keras = keras_module()
    shape = (image_size, image_size, 3)
    if cfg.model == "efficientnet_b0":
        path = weights_file(cfg)
        base = _backbone(keras, str(path) if path else (None if cfg.weights == "none" else cfg.weights), shape)
        base.trainable = True
        return keras.Model(base.input, _head(keras, base.output, num_classes), name="efficientnet_b0_classifier")
    inputs = keras.Input(shape)
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    for filters in (16, 32, 64):
        x = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(x)
        x = keras.layers.BatchNormalization(momentum=_TINY_BN_MOMENTUM)(x)
        x = keras.layers.ReLU()(x)
        x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.GlobalMaxPooling2D()(x)
    return keras.Model(inputs, _head(keras, x, num_classes, _TINY_BN_MOMENTUM), name="tiny_cnn_classifier")
