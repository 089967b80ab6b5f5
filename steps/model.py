"""Model builders: the article's EfficientNet-B0 classifier and a tiny CNN for offline use.

Builders take the Keras module as an argument so the QAT worker can build the same
architecture with ``tf_keras``. Models are flat functional graphs (no nested model),
which quantization-aware training needs in order to annotate individual layers.
"""
from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType

from steps.config import MODELS, TrainConfig
from steps.data import host_reachable

_WEIGHTS_HOST = ("storage.googleapis.com", 443)
_EFFICIENTNET_WEIGHTS = "efficientnetb0_notop.h5"
# A tiny model trains for few steps: faster-moving BatchNorm statistics keep
# inference-mode accuracy from lagging training accuracy after a handful of epochs.
_TINY_BN_MOMENTUM = 0.9


class ModelError(ValueError):
    """The model cannot be built as asked; the message says why and what to do."""


def check(cfg: TrainConfig) -> None:
    """Fail fast, before any data is loaded, on a model or weights that cannot be had."""
    if cfg.model not in MODELS:
        raise ModelError(f"unknown model {cfg.model!r}: choose one of {', '.join(MODELS)}")
    if cfg.weights not in ("imagenet", "none"):
        raise ModelError(f"unknown weights {cfg.weights!r}: use imagenet or none")
    if cfg.weights == "imagenet":
        if cfg.model == "tiny_cnn":
            raise ModelError("tiny_cnn has no pretrained weights: use -P weights=none")
        cached = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "models" / _EFFICIENTNET_WEIGHTS
        if not cached.exists() and not host_reachable(*_WEIGHTS_HOST):
            raise ModelError(
                f"ImageNet weights are not cached ({cached}) and {_WEIGHTS_HOST[0]} is unreachable: "
                "use -P weights=none, or copy the file there"
            )


def _head(keras: ModuleType, x, num_classes: int, bn_momentum: float = 0.99):
    x = keras.layers.Dense(512, activation="relu")(x)
    x = keras.layers.BatchNormalization(momentum=bn_momentum)(x)
    x = keras.layers.Dense(64, activation="relu")(x)
    x = keras.layers.Dropout(0.2)(x)
    return keras.layers.Dense(num_classes, activation="softmax")(x)


def build(cfg: TrainConfig, num_classes: int, image_size: int, keras: ModuleType | None = None):
    """A classifier taking pixel images (0..255) of ``image_size`` and returning class probabilities."""
    if keras is None:
        import keras  # noqa: PLW0621 - the Keras 3 default
    shape = (image_size, image_size, 3)
    if cfg.model == "efficientnet_b0":
        base = keras.applications.EfficientNetB0(
            include_top=False,
            pooling="max",
            weights=None if cfg.weights == "none" else cfg.weights,
            input_shape=shape,
        )
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
