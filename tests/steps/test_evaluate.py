"""The evaluator streams batches and spreads them over worker processes without changing a single prediction."""
from __future__ import annotations

import numpy as np
import pytest

from edge.inference import TFLiteClassifier


@pytest.fixture(scope="module")
def model_and_images(tmp_path_factory):
    """A linear classifier with random weights (only agreement matters) as fp32 TFLite, and digits test images (16 px)."""
    import keras

    from steps import data
    from steps.config import DataConfig
    from steps.convert import convert

    keras.utils.set_random_seed(0)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Flatten()(keras.layers.Rescaling(1 / 255)(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, activation="softmax")(x))
    path = convert(model, "fp32", None, tmp_path_factory.mktemp("m"))
    images, labels = data.to_arrays(data.load(DataConfig(dataset="digits", image_size=16)).test)
    return path, images, labels


def _batches(images, labels, size, pulled=None):
    for i in range(0, len(images), size):
        if pulled is not None:
            pulled.append(i)
        yield images[i : i + size], labels[i : i + size]


def test_streamed_evaluation_matches_image_by_image_inference(model_and_images):
    from steps.evaluate import evaluate_stream

    path, images, labels = model_and_images
    classifier = TFLiteClassifier(path)
    expected = np.array([classifier.predict(x) for x in images])
    assert len(set(expected)) > 1, "a model that answers one class would prove nothing"
    ev = evaluate_stream(path, _batches(images, labels, 50), 10, total=len(images), workers=1)
    np.testing.assert_array_equal(ev.predictions, expected)
    assert ev.accuracy == pytest.approx(np.mean(expected == labels))
    assert ev.latency.runs == len(images) and ev.confusion.sum() == len(images) and ev.workers == 1


def test_parallel_workers_give_the_same_predictions(model_and_images):
    from steps.evaluate import evaluate_stream

    path, images, labels = model_and_images
    one = evaluate_stream(path, _batches(images, labels, 16), 10, total=len(images), workers=1)
    pulled: list[int] = []
    two = evaluate_stream(path, _batches(images, labels, 16, pulled), 10, total=len(images), workers=2,
                          latency_images=20, min_parallel_s=0)
    assert two.workers == 2
    np.testing.assert_array_equal(two.predictions, one.predictions)
    assert two.latency.runs == 20 and len(pulled) == -(-len(images) // 16)


def test_workers_hold_a_bounded_number_of_batches(model_and_images):
    from steps.evaluate import WorkerPool

    path, images, _ = model_and_images
    pulled = answered = 0
    ahead = []

    def batches():
        nonlocal pulled
        for i in range(0, len(images), 8):
            pulled += 1
            ahead.append(pulled - answered)
            yield images[i : i + 8]

    pool = WorkerPool(path, 2)
    try:
        for out in pool.map(batches()):
            answered += 1
            assert len(out) <= 8
    finally:
        pool.close()
    assert answered == pulled == -(-len(images) // 8)
    assert max(ahead) <= 2 * 2 + 1, "never more than two batches in flight per worker"
    assert all(p.returncode == 0 for p in pool.procs)
