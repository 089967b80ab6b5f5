"""Latency and accuracy of a TFLite classifier on this machine."""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from edge.inference import TFLiteClassifier
from edge.proc_status import status_kb


@dataclass(frozen=True)
class LatencyStats:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    runs: int


@dataclass(frozen=True)
class BenchmarkResult:
    latency: LatencyStats
    accuracy: float | None
    sample_size: int
    peak_rss_mb: float
    threads: int | None

    def metrics(self) -> dict[str, float]:
        """Flat metric names (without device prefix) and values."""
        out = {f"latency_{k}": float(v) for k, v in asdict(self.latency).items() if k != "runs"}
        out["peak_rss_mb"] = self.peak_rss_mb
        if self.accuracy is not None:
            out["sample_accuracy"] = self.accuracy
        return out


def latency_stats(times_ms: list[float] | np.ndarray) -> LatencyStats:
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timed runs")
    return LatencyStats(
        p50_ms=float(np.percentile(t, 50)),
        p90_ms=float(np.percentile(t, 90)),
        p99_ms=float(np.percentile(t, 99)),
        mean_ms=float(t.mean()),
        std_ms=float(t.std()),
        runs=int(t.size),
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far.

    Linux's ``ru_maxrss`` survives exec: a puller started by a large process would
    report its parent's size. ``VmHWM`` belongs to this process's own address space.
    """
    hwm_kb = status_kb("self", "VmHWM")
    if hwm_kb is not None:
        return hwm_kb / 1024
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def time_invocations(classifier: TFLiteClassifier, image: np.ndarray, warmup: int, runs: int) -> LatencyStats:
    """Warm up, then time ``runs`` invocations on one prepared image."""
    tensor = classifier.prepare(image)
    for _ in range(warmup):
        classifier.invoke(tensor)
    times = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        classifier.invoke(tensor)
        times.append((time.perf_counter_ns() - start) / 1e6)
    return latency_stats(times)


def sample_accuracy(classifier: TFLiteClassifier, images: np.ndarray, labels: np.ndarray) -> float | None:
    if len(images) == 0:
        return None
    hits = sum(classifier.predict(img) == int(lbl) for img, lbl in zip(images, labels))
    return hits / len(images)


def benchmark(
    classifier: TFLiteClassifier,
    images: np.ndarray,
    labels: np.ndarray,
    warmup: int = 10,
    runs: int = 100,
    threads: int | None = None,
) -> BenchmarkResult:
    """Latency on the first sample image, accuracy on the whole labelled sample."""
    latency = time_invocations(classifier, images[0], warmup, runs)
    return BenchmarkResult(
        latency=latency,
        accuracy=sample_accuracy(classifier, images, labels),
        sample_size=int(len(images)),
        peak_rss_mb=peak_rss_mb(),
        threads=threads,
    )
