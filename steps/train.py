"""Train the Keras baseline (the article's recipe: Adam, sparse cross-entropy, N epochs)."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from steps.config import DataConfig, TrainConfig
from steps.data import Splits, batched


def global_batch_size(model: keras.Model, cfg: TrainConfig) -> int:
    """``batch_size`` is per replica; a model built under MirroredStrategy gets one per replica each step."""
    return cfg.batch_size * model.distribute_strategy.num_replicas_in_sync


def train(model: keras.Model, splits: Splits, data: DataConfig, cfg: TrainConfig, callbacks: list | None = None) -> keras.callbacks.History:
    """Fit in place under the strategy the model was built in; the caller seeds (keras.utils.set_random_seed) first."""
    batch = global_batch_size(model, cfg)
    with model.distribute_strategy.scope():
        model.compile(
            optimizer=keras.optimizers.Adam(cfg.learning_rate),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        return model.fit(
            batched(splits.train, batch, shuffle_seed=data.seed),
            validation_data=batched(splits.val, batch),
            epochs=cfg.epochs,
            callbacks=callbacks or [],
            verbose=2,
        )


def keras_accuracy(model: keras.Model, splits: Splits, batch_size: int) -> float:
    """Exact test accuracy (hits / images), computed the way the TFLite evaluator does.

    The model is called on one device: under MirroredStrategy ``predict_on_batch``
    would run the whole batch on every replica and return one answer per replica.
    """
    infer = tf.function(lambda x: model(x, training=False), reduce_retracing=True)
    hits = total = 0
    for images, labels in batched(splits.test, batch_size):
        predicted = np.argmax(infer(images).numpy(), axis=1)
        hits += int(np.sum(predicted == labels.numpy()))
        total += len(predicted)
    return hits / total
