"""Time models with whatever runtime this interpreter has; prints one JSON object.

Runs inside other virtualenvs too (tflite-runtime needs numpy<2), so it imports only ``edge``.
"""
from __future__ import annotations

import argparse
import json

import numpy as np

from edge.benchmark import time_invocations
from edge.inference import TFLiteClassifier
from edge.runtime import find_runtime


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runtime", required=True)
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("models", nargs="+", help="variant=path")
    args = parser.parse_args()
    runtime = find_runtime(args.runtime)
    result = {"runtime": runtime.label, "threads": args.threads, "models": {}}
    for item in args.models:
        variant, path = item.split("=", 1)
        try:
            classifier = TFLiteClassifier(path, runtime, args.threads)
            image = np.full(classifier.input_shape[1:], 128, np.uint8)
            stats = time_invocations(classifier, image, args.warmup, args.runs)
            result["models"][variant] = {"p50_ms": stats.p50_ms, "p90_ms": stats.p90_ms, "mean_ms": stats.mean_ms}
        except Exception as exc:  # noqa: BLE001 - report which model a runtime cannot load
            result["models"][variant] = {"error": str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__}
    print(json.dumps(result))


if __name__ == "__main__":
    main()
