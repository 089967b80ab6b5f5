"""Build the tiny TFLite bundles checked in under tests/edge/fixtures/ (needs TensorFlow: run with .venv).

    .venv/bin/python scripts/make_edge_fixtures.py            # rewrites tests/edge/fixtures/

Trains a small CNN on scikit-learn's digits (16×16 pixels, 0..255, three channels,
through the pipeline's own data step), converts it with the pipeline's converter to
fp32, fp16, dynamic range and full-integer int8 (uint8 in/out), evaluates each on the
whole test split with the device's interpreter, and writes one bundle per variant with
``edge.bundle.write_bundle`` plus ``registry.json``: the version tags and run metrics
the pipeline would register for it. The edge tests register these bundles on a real
MLflow server through the REST API, so they need neither TensorFlow nor a training run.
Seeded; each bundle is a few tens of kB. Rerun only when the contract changes.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from edge import contract  # noqa: E402
from edge.bundle import load_sample, write_bundle  # noqa: E402
from edge.inference import TFLiteClassifier  # noqa: E402

FIXTURES = REPO / "tests" / "edge" / "fixtures"
VARIANTS = ("fp32", "fp16", "dynamic", "int8")
IMAGE_SIZE = 16
SEED = 7
EPOCHS = 40
SAMPLE_SIZE = 32
MIN_SAMPLE_ACCURACY = 0.9


def build_model(keras, num_classes: int):
    """Small on purpose (a few thousand weights) so every bundle stays far below 100 kB."""
    inputs = keras.Input((IMAGE_SIZE, IMAGE_SIZE, 3))
    x = keras.layers.Rescaling(1.0 / 255)(inputs)
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(16, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Flatten()(x)
    outputs = keras.layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="edge_fixture_cnn")


def main(out: Path) -> None:
    import keras
    import tensorflow as tf

    from steps.config import DataConfig
    from steps.convert import convert
    from steps.data import load, to_arrays
    from steps.evaluate import evaluate_tflite
    from steps.variant import version_tags

    keras.utils.set_random_seed(SEED)
    tf.config.experimental.enable_op_determinism()
    splits = load(DataConfig(dataset="digits", image_size=IMAGE_SIZE, seed=SEED))
    labels = splits.info.labels
    train_x, train_y = to_arrays(splits.train)
    test_x, test_y = to_arrays(splits.test)

    model = build_model(keras, len(labels))
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(train_x.astype(np.float32), train_y, batch_size=32, epochs=EPOCHS, verbose=0, shuffle=True)
    keras_acc = float(np.mean(np.argmax(model.predict(test_x.astype(np.float32), verbose=0), axis=1) == test_y))
    print(f"keras test accuracy {keras_acc:.4f} on {len(test_y)} images, {model.count_params()} weights")

    registry: dict = {"image_size": IMAGE_SIZE, "seed": SEED, "labels": list(labels), "variants": {}}
    fp32_p50 = None
    with tempfile.TemporaryDirectory() as work:
        for variant in VARIANTS:
            path = convert(model, variant, train_x[:200].astype(np.float32), Path(work))
            ev = evaluate_tflite(path, test_x, test_y, len(labels), desc=variant)
            fp32_p50 = fp32_p50 or ev.latency.p50_ms
            size = path.stat().st_size
            metrics = {
                contract.M_ACCURACY: ev.accuracy,
                contract.M_DROP: round(100.0 * (keras_acc - ev.accuracy), 6),
                contract.M_SIZE: float(size),
                contract.M_P50: ev.latency.p50_ms,
                contract.M_P90: ev.latency.p90_ms,
                contract.M_SPEEDUP: fp32_p50 / ev.latency.p50_ms,
            }
            bundle = out / variant
            write_bundle(bundle, path, list(labels), test_x[:SAMPLE_SIZE], test_y[:SAMPLE_SIZE])
            images, sample_labels = load_sample(bundle)
            classifier = TFLiteClassifier(bundle / contract.MODEL_FILE)
            sample_acc = float(np.mean([classifier.predict(im) == y for im, y in zip(images, sample_labels)]))
            if sample_acc < MIN_SAMPLE_ACCURACY:
                raise SystemExit(f"{variant}: sample accuracy {sample_acc:.3f} < {MIN_SAMPLE_ACCURACY}: retrain longer")
            registry["variants"][variant] = {"tags": version_tags(variant, path, IMAGE_SIZE, labels), "metrics": metrics}
            total = sum(f.stat().st_size for f in bundle.iterdir())
            print(f"{variant}: test accuracy {ev.accuracy:.4f}, sample accuracy {sample_acc:.3f}, "
                  f"model {size} bytes, bundle {total} bytes")
    (out / "registry.json").write_text(json.dumps(registry, indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=FIXTURES)
    main(parser.parse_args().out)
