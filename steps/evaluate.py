"""Evaluate a TFLite variant on the whole test split with the same interpreter a device uses.

Images arrive batch by batch: the split is never held whole. Latency is timed here,
image by image, on the first ``latency_images`` (with nothing else running); the
remaining images are spread over one interpreter per core, each in its own light
worker process (``steps.eval_worker``), when the estimated time makes that pay.
"""
from __future__ import annotations

import itertools
import math
import os
import subprocess
import sys
import tempfile
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
from tqdm import tqdm

from edge.benchmark import LatencyStats, latency_stats
from edge.inference import TFLiteClassifier
from edge.runtime import Runtime
from steps import eval_worker

REPO = Path(__file__).resolve().parent.parent
LATENCY_IMAGES = 200
# Below this much estimated single-process time, starting workers (about a second) does not pay.
MIN_PARALLEL_SECONDS = 3.0
_BATCH = 64
_IN_FLIGHT_PER_WORKER = 2


class EvaluationError(RuntimeError):
    """An evaluation worker failed."""


@dataclass(frozen=True)
class Evaluation:
    accuracy: float
    predictions: np.ndarray
    latency: LatencyStats
    confusion: np.ndarray  # rows: true class, columns: predicted
    workers: int = 1  # processes that ran inference (1: this one only)


def confusion_matrix(labels: np.ndarray, predictions: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(int), predictions.astype(int)), 1)
    return matrix


def default_workers() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


class WorkerPool:
    """``n`` evaluation workers; batches go round-robin, a bounded number in flight, answers in order."""

    def __init__(self, model_path: Path, n: int, runtime: Runtime | None = None):
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
        cmd = [sys.executable, "-m", "steps.eval_worker", str(model_path)] + ([runtime.package] if runtime else [])
        self._logs = [tempfile.TemporaryFile() for _ in range(n)]
        self.procs = [subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, cwd=REPO, env=env)
                      for log in self._logs]

    def map(self, batches: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        n = len(self.procs)
        order: deque[int] = deque()
        outstanding = [0] * n
        for i, images in enumerate(batches):
            w = i % n
            while outstanding[w] >= _IN_FLIGHT_PER_WORKER:
                yield self._receive(order.popleft(), outstanding)
            self._send(w, images)
            outstanding[w] += 1
            order.append(w)
        while order:
            yield self._receive(order.popleft(), outstanding)

    def _send(self, w: int, images: np.ndarray) -> None:
        try:
            eval_worker.send(self.procs[w].stdin, np.ascontiguousarray(images))
        except OSError as exc:
            raise self._failure(w) from exc

    def _receive(self, w: int, outstanding: list[int]) -> np.ndarray:
        try:
            answer = eval_worker.receive(self.procs[w].stdout)
        except (ValueError, OSError, EOFError) as exc:
            raise self._failure(w) from exc
        if answer is None:
            raise self._failure(w)
        outstanding[w] -= 1
        return answer

    def _failure(self, w: int) -> EvaluationError:
        proc = self.procs[w]
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
        self._logs[w].seek(0)
        tail = self._logs[w].read().decode(errors="replace").strip().splitlines()[-5:]
        return EvaluationError(f"evaluation worker exited with {proc.returncode}: {' | '.join(tail)}")

    def close(self) -> None:
        for proc in self.procs:
            if proc.stdin and not proc.stdin.closed:
                try:
                    proc.stdin.close()
                except OSError:
                    pass
        for proc in self.procs:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for log in self._logs:
            log.close()


def _chunks(batches: Iterable[tuple[np.ndarray, np.ndarray]], labels: list[np.ndarray]) -> Iterator[np.ndarray]:
    """Images of each batch; the labels stay here, in order."""
    for images, batch_labels in batches:
        labels.append(np.asarray(batch_labels, np.int64))
        yield images


def evaluate_stream(
    model_path: Path,
    batches: Iterable[tuple[np.ndarray, np.ndarray]],
    num_classes: int,
    *,
    total: int | None = None,
    warmup: int = 10,
    latency_images: int = LATENCY_IMAGES,
    workers: int | None = None,
    min_parallel_s: float = MIN_PARALLEL_SECONDS,
    runtime: Runtime | None = None,
    desc: str = "evaluate",
) -> Evaluation:
    """Accuracy over every image of ``batches`` ((images, labels) pairs); latency p50/p90 after warm-up."""
    workers = default_workers() if workers is None else max(1, workers)
    classifier = TFLiteClassifier(model_path, runtime)
    labels: list[np.ndarray] = []
    predictions: list[np.ndarray] = []
    times_ms: list[float] = []
    stream = _chunks(batches, labels)
    bar = tqdm(total=total, desc=desc, unit="img", mininterval=1.0)
    done = 0
    rest: np.ndarray | None = None
    # Timed, image by image, until latency_images: this also gives the cost per image.
    for images in stream:
        if not times_ms and len(images):
            first = classifier.prepare(images[0])
            for _ in range(warmup):
                classifier.invoke(first)
        k = min(len(images), max(0, latency_images - len(times_ms)))
        out = np.empty(k, np.int64)
        for i in range(k):
            tensor = classifier.prepare(images[i])
            start = time.perf_counter_ns()
            classifier.invoke(tensor)
            times_ms.append((time.perf_counter_ns() - start) / 1e6)
            out[i] = int(np.argmax(classifier.scores()))
        predictions.append(out)
        done += k
        bar.update(k)
        if k < len(images):
            rest = images[k:]
            break
    if rest is not None:
        remaining = itertools.chain([rest], stream)
        estimate_s = (float(np.median(times_ms)) / 1000 * (total - done)) if total is not None else math.inf
        used = min(workers, math.ceil((total - done) / _BATCH)) if total is not None else workers
        if used > 1 and estimate_s >= min_parallel_s:
            pool = WorkerPool(model_path, used, runtime)
            try:
                for out in pool.map(remaining):
                    predictions.append(out)
                    bar.update(len(out))
            finally:
                pool.close()
        else:
            used = 1
            for images in remaining:
                predictions.append(np.fromiter((classifier.predict(x) for x in images), np.int64, len(images)))
                bar.update(len(images))
    else:
        used = 1
    bar.close()
    all_predictions = np.concatenate(predictions) if predictions else np.zeros(0, np.int64)
    all_labels = np.concatenate(labels) if labels else np.zeros(0, np.int64)
    if len(all_predictions) != len(all_labels):
        raise EvaluationError(f"{len(all_predictions)} predictions for {len(all_labels)} images")
    return Evaluation(
        accuracy=float(np.mean(all_predictions == all_labels)),
        predictions=all_predictions,
        latency=latency_stats(np.asarray(times_ms, np.float64)),
        confusion=confusion_matrix(all_labels, all_predictions, num_classes),
        workers=used,
    )


def evaluate_tflite(
    model_path: Path,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    warmup: int = 10,
    runtime: Runtime | None = None,
    desc: str = "evaluate",
    **options,
) -> Evaluation:
    """``evaluate_stream`` over arrays already in memory."""
    batches = ((images[i : i + _BATCH], labels[i : i + _BATCH]) for i in range(0, len(images), _BATCH))
    return evaluate_stream(model_path, batches, num_classes, total=len(images), warmup=warmup, runtime=runtime,
                           desc=desc, **options)
