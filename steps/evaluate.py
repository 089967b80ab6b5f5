"""Evaluate a TFLite variant on the whole test split with the same interpreter a device uses."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from edge.benchmark import LatencyStats, latency_stats
from edge.inference import TFLiteClassifier
from edge.runtime import Runtime


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    predictions: np.ndarray
    latency: LatencyStats
    confusion: np.ndarray  # rows: true class, columns: predicted


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(int), predictions.astype(int)), 1)
    return matrix


def evaluate_tflite(
    model_path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    warmup: int = 10,
    runtime: Runtime | None = None,
    desc: str = "evaluate",
) -> Evaluation:
    """Accuracy over every image; latency p50/p90 from the timed invocations after warm-up."""
    classifier = TFLiteClassifier(model_path, runtime)
    first = classifier.prepare(images[0])
    for _ in range(warmup):
        classifier.invoke(first)
    predictions = np.empty(len(images), dtype=np.int64)
    times_ms = np.empty(len(images), dtype=np.float64)
    for i in tqdm(range(len(images)), desc=desc, unit="img", mininterval=1.0):
        tensor = classifier.prepare(images[i])
        start = time.perf_counter_ns()
        classifier.invoke(tensor)
        times_ms[i] = (time.perf_counter_ns() - start) / 1e6
        predictions[i] = int(np.argmax(classifier.scores()))
    return Evaluation(
        accuracy=float(np.mean(predictions == labels)),
        predictions=predictions,
        latency=latency_stats(times_ms),
        confusion=confusion_matrix(labels, predictions, num_classes),
    )
