"""The pipeline's evaluator against the article's loop: same model, same test images, images per second.

The article's loop walks the tf.data test split one image at a time, feeds the
interpreter, and prints every 100 images. The evaluator materializes the split once
and reuses one prepared interpreter (the device's inference path).
"""
from __future__ import annotations

import contextlib
import io
import time
from pathlib import Path

import numpy as np

from edge.runtime import find_runtime


def article_loop(model_path: Path, test_ds) -> tuple[float, float]:
    """(accuracy, seconds), written as the article's evaluation loop."""
    interpreter = find_runtime().interpreter(str(model_path))
    interpreter.allocate_tensors()
    input_index = interpreter.get_input_details()[0]["index"]
    output_index = interpreter.get_output_details()[0]["index"]
    predictions, labels = [], []
    start = time.perf_counter()
    for i, (image, label) in enumerate(test_ds):
        if i % 100 == 0:
            print(f"Evaluated on {i} results so far.")
        interpreter.set_tensor(input_index, np.expand_dims(image, axis=0).astype(np.float32))
        interpreter.invoke()
        predictions.append(np.argmax(interpreter.get_tensor(output_index)[0]))
        labels.append(int(label))
    seconds = time.perf_counter() - start
    return float(np.mean(np.array(predictions) == np.array(labels))), seconds


def edgeq_evaluator(model_path: Path, test_ds, num_classes: int) -> tuple[float, float]:
    from steps.data import to_arrays
    from steps.evaluate import evaluate_tflite

    start = time.perf_counter()
    images, labels = to_arrays(test_ds)
    ev = evaluate_tflite(model_path, images, labels, num_classes, warmup=0, desc="edgeq evaluator")
    return ev.accuracy, time.perf_counter() - start


def compare(name: str, model_path: Path, test_ds, num_classes: int, n: int) -> str:
    with contextlib.redirect_stdout(io.StringIO()):  # the article's prints, not ours
        art_acc, art_s = article_loop(model_path, test_ds)
    ours_acc, ours_s = edgeq_evaluator(model_path, test_ds, num_classes)
    assert abs(art_acc - ours_acc) < 1e-9, f"the two loops disagree: {art_acc} vs {ours_acc}"
    return (f"| {name} | {n} | {n / art_s:.0f} | {n / ours_s:.0f} | {art_s / ours_s:.2f}× | "
            f"{100 * ours_acc:.2f} % in both |")


def run() -> str:
    import tempfile

    from bench.models import efficientnet_variants
    from steps import data as data_mod
    from steps.config import DataConfig, TrainConfig
    from steps.convert import convert
    from steps.model import build

    rows = ["| model (untrained: only speed matters) | test images | article loop img/s | edgeq evaluator img/s | speed-up | accuracy |",
            "|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        small = data_mod.load(DataConfig(dataset="digits", image_size=32))
        tiny = build(TrainConfig(model="tiny_cnn", weights="none"), 10, 32)
        path = convert(tiny, "fp32", None, Path(tmp))
        n = sum(1 for _ in small.test)
        rows.append(compare("tiny CNN 32 px (digits)", path, small.test, 10, n))
    large = data_mod.load(DataConfig(dataset="digits", image_size=224))
    effnet = efficientnet_variants()["fp32"]
    # The cached EfficientNet has 2 outputs; accuracy is meaningless here, only the speed is compared.
    rows.append(compare("EfficientNet-B0 224 px (digits)", effnet, large.test, 10, sum(1 for _ in large.test)))
    return "### Evaluation throughput, fp32, ai-edge-litert\n\n" + "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(run())
