"""QAT worker process: rebuild the baseline in tf_keras, fine-tune quantization-aware, convert to int8.

Run by `steps.qat.convert_qat`; usage: ``python -m steps.qat_worker CONFIG.json WEIGHTS.npz OUT.tflite``.
"""
from __future__ import annotations

import os
import sys

os.environ["TF_USE_LEGACY_KERAS"] = "1"

import json  # noqa: E402
import shutil  # noqa: E402
from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from steps.quiet import import_tensorflow  # noqa: E402

import_tensorflow()  # its start-up lines would land in the pipeline's output

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
import tensorflow_model_optimization as tfmot  # noqa: E402
import tf_keras  # noqa: E402

from edge import contract  # noqa: E402
from steps import data as data_mod  # noqa: E402
from steps.bn_fold import fold_batchnorms  # noqa: E402
from steps.config import DataConfig, QuantConfig, TrainConfig  # noqa: E402
from steps.convert import configure, with_batch_one  # noqa: E402
from steps.input_cache import CacheConfig  # noqa: E402
from steps.model import build  # noqa: E402

quant = tfmot.quantization.keras

# tfmot has no quantize config for these (no weights to quantize): they get an
# output-only quantizer, so the layers after them receive int8 tensors. Left
# unannotated, EfficientNet's SE `Multiply` would feed float into every block's
# project conv (and its squeeze pooling into the SE convs), and the converter would
# keep those convs float.
_OUTPUT_ONLY = (tf_keras.layers.Rescaling, tf_keras.layers.Normalization, tf_keras.layers.Multiply,
                tf_keras.layers.GlobalAveragePooling2D)


class OutputQuantizerConfig(quant.QuantizeConfig):
    """Quantize only a layer's output, never its weights (it has none).

    (Not named OutputOnlyConfig: tfmot's own scope has a class of that name.)

    On the model's first layer (Rescaling) it also makes ``quantize_apply`` put a
    quantizer on the model input: the converted model then takes uint8 pixels directly
    (scale 1, zero point 0 for 0..255), like the post-training int8 variant.
    """

    def get_weights_and_quantizers(self, layer):
        return []

    def get_activations_and_quantizers(self, layer):
        return []

    def set_quantize_weights(self, layer, quantize_weights):
        pass

    def set_quantize_activations(self, layer, quantize_activations):
        pass

    def get_output_quantizers(self, layer):
        return [quant.quantizers.MovingAverageQuantizer(num_bits=8, per_axis=False, symmetric=False, narrow_range=False)]

    def get_config(self):
        return {}


def annotate(model: tf_keras.Model) -> tf_keras.Model:
    registry = quant.default_8bit.Default8BitQuantizeRegistry()

    def clone(layer):
        fresh = layer.__class__.from_config(layer.get_config())
        if isinstance(layer, _OUTPUT_ONLY):
            return quant.quantize_annotate_layer(fresh, OutputQuantizerConfig())
        if not registry.supports(layer):
            return fresh
        return quant.quantize_annotate_layer(fresh)

    return tf_keras.models.clone_model(model, clone_function=clone)


def load_weights(model: tf_keras.Model, path: Path) -> None:
    with np.load(path, allow_pickle=False) as npz:
        weights = [npz[f"arr_{i}"] for i in range(len(npz.files))]
    expected = [w.shape for w in model.get_weights()]
    if [w.shape for w in weights] != expected:
        raise SystemExit(f"qat: baseline weights ({len(weights)}) do not match the tf_keras model ({len(expected)})")
    model.set_weights(weights)


def main(config_path: str, weights_path: str, out_path: str) -> None:
    cfg = json.loads(Path(config_path).read_text())
    data_cfg, train_cfg, quant_cfg = DataConfig(**cfg["data"]), TrainConfig(**cfg["train"]), QuantConfig(**cfg["quant"])
    tf_keras.utils.set_random_seed(data_cfg.seed)
    # The folder fingerprint comes from the pipeline's cache (nothing is read again); decoded
    # images are cached once for the QAT epochs, next to the output.
    splits = data_mod.load(data_cfg, cache=CacheConfig(directory=Path(out_path).parent / "qat_input_cache"))
    # The baseline's weights replace whatever the builder starts with: never fetch or read pretrained ones.
    model = build(replace(train_cfg, weights="none"), len(splits.info.labels), data_cfg.image_size, keras=tf_keras)
    load_weights(model, Path(weights_path))
    model = fold_batchnorms(model, tf_keras)
    annotated = annotate(model)
    annotated.set_weights(model.get_weights())
    with quant.quantize_scope({"OutputQuantizerConfig": OutputQuantizerConfig}):
        qat_model = quant.quantize_apply(annotated)
    qat_model.compile(
        optimizer=tf_keras.optimizers.Adam(quant_cfg.qat_learning_rate),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    if quant_cfg.qat_epochs > 0:
        qat_model.fit(
            data_mod.batched(splits.train, train_cfg.batch_size, shuffle_seed=data_cfg.seed),
            validation_data=data_mod.batched(splits.val, train_cfg.batch_size),
            epochs=quant_cfg.qat_epochs,
            verbose=2,
        )
    shutil.rmtree(Path(out_path).parent / "qat_input_cache", ignore_errors=True)
    converter = tf.lite.TFLiteConverter.from_keras_model(with_batch_one(qat_model, tf_keras))
    configure(converter, contract.QAT, None)
    Path(out_path).write_bytes(converter.convert())


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
