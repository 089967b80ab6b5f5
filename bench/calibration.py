"""What costs int8 accuracy: the same trained model, calibrated four ways, evaluated on the whole test split.

The article lost 5.7 points with int8. The usual causes are calibration data that
does not match what the model sees at inference, or too few calibration images;
edgeq calibrates with training images through the exact inference preprocessing.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def run(image_size: int = 32, epochs: int = 10) -> str:
    import keras

    from steps import data as data_mod
    from steps.config import DataConfig, TrainConfig
    from steps.convert import convert
    from steps.evaluate import evaluate_tflite
    from steps.model import build
    from steps.train import keras_accuracy, train

    data = DataConfig(dataset="digits", image_size=image_size)
    cfg = TrainConfig(model="tiny_cnn", weights="none", epochs=epochs, learning_rate=1e-3)
    keras.utils.set_random_seed(data.seed)
    splits = data_mod.load(data)
    model = build(cfg, 10, image_size)
    train(model, splits, data, cfg)
    baseline = keras_accuracy(model, splits, cfg.batch_size)
    test_images, test_labels = data_mod.to_arrays(splits.test)
    train_images, _ = data_mod.to_arrays(splits.train, 200)
    rng = np.random.default_rng(0)
    calibrations = {
        "edgeq: 200 training images, inference preprocessing": train_images,
        "only 8 calibration images": train_images[:8],
        "calibrated on 0..1 inputs, fed 0..255 (preprocessing mismatch)": train_images / 255.0,
        "random noise instead of images": rng.uniform(0, 255, train_images.shape),
    }
    rows = [f"Keras baseline (tiny CNN, digits {image_size} px): {100 * baseline:.2f} %", "",
            "| calibration | int8 accuracy % | drop (points) |", "|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for i, (name, images) in enumerate(calibrations.items()):
            path = convert(model, "int8", images.astype(np.float32), Path(tmp) / str(i))
            ev = evaluate_tflite(path, test_images, test_labels, 10, desc=name[:20])
            rows.append(f"| {name} | {100 * ev.accuracy:.2f} | {100 * (baseline - ev.accuracy):+.2f} |")
    return "### int8 calibration: what costs accuracy\n\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(run())
