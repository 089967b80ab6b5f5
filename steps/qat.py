"""Quantization-aware fine-tuning, run in its own process.

tensorflow-model-optimization works only with ``tf_keras`` and flips
``TF_USE_LEGACY_KERAS`` for the whole process when imported, so the work happens in
``steps.qat_worker`` in a child process; the two sides exchange plain files
(weights as ``.npz``, configuration as JSON, the result as ``.tflite``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import numpy as np

from steps.config import DataConfig, QuantConfig, TrainConfig


class QATError(RuntimeError):
    """The QAT worker failed."""


def convert_qat(model, data: DataConfig, train: TrainConfig, quant: QuantConfig, out_dir: Path) -> Path:
    """Fine-tune ``model`` (a Keras 3 model) with fake quantization, convert to int8; returns ``qat.tflite``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    weights = out_dir / "qat_start_weights.npz"
    np.savez(weights, *model.get_weights())
    config = out_dir / "qat_config.json"
    config.write_text(json.dumps({"data": asdict(data), "train": asdict(train), "quant": asdict(quant)}))
    out = out_dir / "qat.tflite"
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1")
    cmd = [sys.executable, "-m", "steps.qat_worker", str(config), str(weights), str(out)]
    proc = subprocess.run(cmd, env=env, cwd=Path(__file__).resolve().parent.parent)
    weights.unlink(missing_ok=True)
    if proc.returncode != 0 or not out.exists():
        raise QATError(f"QAT worker failed with exit code {proc.returncode} (its output is above)")
    return out
