"""Selective int8: quantize everything except the layers that lose most, found with TFLite's quantization debugger.

The debugger runs the float and the quantized model side by side on calibration
images and measures each layer's error. Layers whose RMSE exceeds ``threshold``
quantization steps (TensorFlow's guide uses 0.7), and at least the worst 5 %, stay
float; the rest is int8. Input and output stay float32 (raw pixels in, scores out):
the denylisted layers need float tensors around them anyway.
"""
from __future__ import annotations

import contextlib
import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from steps.convert import representative_dataset, with_batch_one

RMSE_PER_STEP_THRESHOLD = 0.7
MIN_FRACTION_FLOAT = 0.05


@dataclass(frozen=True)
class SelectiveModel:
    path: Path
    layer_stats: Path  # CSV: one row per quantized layer, with rmse_per_step
    float_layers: tuple[str, ...]


def suspects(rows: list[dict], threshold: float = RMSE_PER_STEP_THRESHOLD, min_fraction: float = MIN_FRACTION_FLOAT) -> list[str]:
    """Tensor names to keep float: above ``threshold`` RMSE per quantization step, and at least the worst ``min_fraction``."""
    ranked = sorted(rows, key=lambda r: r["rmse_per_step"], reverse=True)
    count = max(sum(r["rmse_per_step"] > threshold for r in ranked), math.ceil(min_fraction * len(ranked)), 1)
    return [r["tensor_name"] for r in ranked[:count]]


def _layer_stats(debugger) -> list[dict]:
    buf = io.StringIO()
    debugger.layer_statistics_dump(buf)
    buf.seek(0)
    rows = []
    for row in csv.DictReader(buf):
        scale = float(row["scale"] or 0)
        mse = float(row["mean_squared_error"] or 0)
        rows.append({**row, "rmse_per_step": math.sqrt(mse) / scale if scale else 0.0})
    return rows


def convert_selective(model, rep_images: np.ndarray, out_dir: Path) -> SelectiveModel:
    """Write ``<out_dir>/selective.tflite`` and its layer statistics."""
    out_dir.mkdir(parents=True, exist_ok=True)

    def converter() -> "tf.lite.TFLiteConverter":
        conv = tf.lite.TFLiteConverter.from_keras_model(with_batch_one(model))
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative_dataset(rep_images)
        return conv

    with contextlib.redirect_stdout(io.StringIO()):  # Keras' export lists every captured variable
        debugger = tf.lite.experimental.QuantizationDebugger(converter=converter(), debug_dataset=representative_dataset(rep_images))
        debugger.run()
        rows = _layer_stats(debugger)
        keep_float = suspects(rows)
        options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=keep_float)
        selective = tf.lite.experimental.QuantizationDebugger(
            converter=converter(), debug_dataset=representative_dataset(rep_images), debug_options=options
        ).get_nondebug_quantized_model()
    path = out_dir / "selective.tflite"
    path.write_bytes(selective)
    stats = out_dir / "layer_stats.csv"
    with open(stats, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]) + ["kept_float"])
        writer.writeheader()
        for row in sorted(rows, key=lambda r: r["rmse_per_step"], reverse=True):
            writer.writerow({**row, "kept_float": row["tensor_name"] in keep_float})
    return SelectiveModel(path, stats, tuple(keep_float))
