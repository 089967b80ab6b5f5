"""Convert a Keras model to TensorFlow Lite: fp32, fp16, dynamic range or full-integer int8.

Input batch size is fixed to 1 so edge runtimes take their fast paths. Per-channel
quantization of dense layers is turned off for dynamic range, which keeps
FULLY_CONNECTED at an op version that tflite-runtime 2.14 still loads.
"""
from __future__ import annotations

import contextlib
import io
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from edge import contract

CONVERTIBLE = (contract.FP32, contract.FP16, contract.DYNAMIC, contract.INT8)


def representative_dataset(images: np.ndarray) -> Callable[[], Iterator[list[np.ndarray]]]:
    """Calibration generator: the same pixel images (float32, 0..255) the model sees at inference."""

    def generate() -> Iterator[list[np.ndarray]]:
        for image in images:
            yield [image[None].astype(np.float32)]

    return generate


def with_batch_one(model, keras_module=None):
    """The same model behind an input of fixed batch size 1."""
    if keras_module is None:
        import keras as keras_module
    inputs = keras_module.Input(model.input_shape[1:], batch_size=1, name="image")
    return keras_module.Model(inputs, model(inputs), name=model.name)


def configure(converter: "tf.lite.TFLiteConverter", variant: str, rep_images: np.ndarray | None) -> None:
    """Set a converter's options for one variant (also used for QAT models, as int8)."""
    if variant == contract.FP32:
        return
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if variant == contract.FP16:
        converter.target_spec.supported_types = [tf.float16]
    elif variant == contract.DYNAMIC:
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    elif variant == contract.INT8:
        if rep_images is None or len(rep_images) == 0:
            raise ValueError("int8 conversion needs representative images")
        converter.representative_dataset = representative_dataset(rep_images)
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    elif variant == contract.QAT:
        # Ranges come from the fake-quant layers trained in; a representative dataset on
        # top of them makes TF 2.21's converter emit a model that predicts one class.
        converter.inference_input_type = tf.uint8
        converter.inference_output_type = tf.uint8
    else:
        raise ValueError(f"unknown variant {variant!r}: choose one of {', '.join(CONVERTIBLE)}")


def convert(model, variant: str, rep_images: np.ndarray | None, out_dir: Path) -> Path:
    """Write ``<out_dir>/<variant>.tflite`` and return its path."""
    converter = tf.lite.TFLiteConverter.from_keras_model(with_batch_one(model))
    configure(converter, variant, rep_images)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{variant}.tflite"
    # Keras' export prints every captured variable of the traced function to stdout.
    with contextlib.redirect_stdout(io.StringIO()):
        flatbuffer = converter.convert()
    path.write_bytes(flatbuffer)
    return path
