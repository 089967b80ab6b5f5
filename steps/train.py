"""Train the Keras baseline (the article's recipe: Adam, sparse cross-entropy, N epochs)."""
from __future__ import annotations

import keras
import numpy as np

from steps.config import DataConfig, TrainConfig
from steps.data import Splits, batched


def train(model: keras.Model, splits: Splits, data: DataConfig, cfg: TrainConfig, callbacks: list | None = None) -> keras.callbacks.History:
    """Fit in place; the caller seeds (keras.utils.set_random_seed) before building the model."""
    model.compile(
        optimizer=keras.optimizers.Adam(cfg.learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model.fit(
        batched(splits.train, cfg.batch_size, shuffle_seed=data.seed),
        validation_data=batched(splits.val, cfg.batch_size),
        epochs=cfg.epochs,
        callbacks=callbacks or [],
        verbose=2,
    )


def keras_accuracy(model: keras.Model, splits: Splits, batch_size: int) -> float:
    """Exact test accuracy (hits / images), computed the way the TFLite evaluator does."""
    hits = total = 0
    for images, labels in batched(splits.test, batch_size):
        predicted = np.argmax(model.predict_on_batch(images), axis=1)
        hits += int(np.sum(predicted == labels.numpy()))
        total += len(predicted)
    return hits / total
