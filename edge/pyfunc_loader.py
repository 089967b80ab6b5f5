"""MLflow pyfunc loader for a TFLite version: runs its ``model.tflite`` through the device's own inference path.

MLflow ships this module (with the few ``edge`` modules it imports) inside each logged
model as code and calls ``_load_pyfunc``; it needs numpy and a TFLite runtime only,
never mlflow or TensorFlow. Devices never import it: they read the bundle files alone.
"""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edge.contract import MODEL_FILE
from edge.inference import TFLiteClassifier

# What this loader imports from edge/, shipped alongside it (steps/mlflow_model.py copies these).
SHIPPED_MODULES = ("__init__", "contract", "runtime", "inference", "pyfunc_loader")


class TFLitePyfunc:
    """``predict(images)`` → class scores (N × classes, float32), one image at a time like a device."""

    def __init__(self, model_path: Path | str, threads: int | None = None):
        self.classifier = TFLiteClassifier(model_path, threads=threads)
        # One interpreter: a serving process may call predict from several threads.
        self._lock = threading.Lock()
        self.classes = int(np.prod(self.classifier.interpreter.get_output_details()[0]["shape"][1:]))

    def images(self, model_input: Any) -> np.ndarray:
        """Raw pixel images (N, H, W, C) from an array, a list, or a one-entry dict (a named tensor)."""
        if isinstance(model_input, dict):
            if len(model_input) != 1:
                raise ValueError(f"expected one input tensor of images, got {sorted(model_input)}")
            model_input = next(iter(model_input.values()))
        if hasattr(model_input, "to_numpy"):  # a pandas DataFrame of one image per row
            model_input = np.stack([np.asarray(v) for v in model_input.iloc[:, 0]])
        images = np.asarray(model_input)
        shape = self.classifier.input_shape[1:]
        if images.shape == shape:
            images = images[None]
        if images.shape[1:] != shape:
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, shape))}), got {images.shape}")
        return images

    def predict(self, model_input: Any, params: dict[str, Any] | None = None) -> np.ndarray:
        images = self.images(model_input)
        with self._lock:
            rows = []
            for image in images:
                self.classifier.invoke(self.classifier.prepare(image))
                rows.append(self.classifier.scores())
        return np.stack(rows).astype(np.float32) if rows else np.zeros((0, self.classes), np.float32)


def _load_pyfunc(path: str) -> TFLitePyfunc:
    """MLflow's loader entry point: ``path`` is the model directory (the version's files)."""
    return TFLitePyfunc(Path(path) / MODEL_FILE)
