"""Run a TFLite image classifier: quantize the input, invoke, dequantize the scores.

Used by the pipeline's evaluator and by the device's benchmark, so both measure the
exact same inference path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from edge.runtime import Runtime, find_runtime, quiet_native_stderr


class TFLiteClassifier:
    """One interpreter for one model, fed raw pixel images (H, W, C) in 0..255."""

    def __init__(self, model_path: Path | str, runtime: Runtime | None = None, threads: int | None = None):
        self.runtime = runtime or find_runtime()
        with quiet_native_stderr():
            self.interpreter = self.runtime.interpreter(str(model_path), threads)
            self.interpreter.allocate_tensors()
        self._input = self.interpreter.get_input_details()[0]
        self._output = self.interpreter.get_output_details()[0]
        self.input_shape = tuple(int(d) for d in self._input["shape"])
        self.input_dtype = np.dtype(self._input["dtype"])

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Turn one pixel image into the model's input tensor (batch of one)."""
        x = np.asarray(image, dtype=np.float32).reshape(self.input_shape)
        if self.input_dtype.kind in "iu":
            scale, zero_point = self._input["quantization"]
            info = np.iinfo(self.input_dtype)
            if scale:
                x = np.round(x / scale + zero_point)
            x = np.clip(x, info.min, info.max)
        return x.astype(self.input_dtype)

    def invoke(self, tensor: np.ndarray) -> None:
        """Run the model on a prepared input tensor (the part that is timed)."""
        self.interpreter.set_tensor(self._input["index"], tensor)
        self.interpreter.invoke()

    def scores(self) -> np.ndarray:
        """Class scores of the last invocation, as float32."""
        out = self.interpreter.get_tensor(self._output["index"])[0]
        if self._output["dtype"] in (np.uint8, np.int8, np.int16):
            scale, zero_point = self._output["quantization"]
            return (out.astype(np.float32) - zero_point) * (scale or 1.0)
        return out.astype(np.float32)

    def predict(self, image: np.ndarray) -> int:
        self.invoke(self.prepare(image))
        return int(np.argmax(self.scores()))
