"""The child process that loads a candidate model, checks it on its sample and benchmarks it.

Run by edge/sandbox.py as ``python -m edge.candidate JOB.json RESULT.json``; whatever the
model does to this process (crash, hang, eat memory) cannot touch the puller. It writes
one JSON result: the benchmark, or the reason the bundle's content is refused.
"""
from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict
from pathlib import Path

from edge.contract import MODEL_FILE

# Exit codes the parent maps to reasons (besides 0 and death by a signal).
EXIT_MEMORY = 71  # an allocation failed under the memory limit
EXIT_RUNTIME = 72  # no usable runtime here: the device's fault, not the version's


def main(job_path: str, result_path: str) -> int:
    job = json.loads(Path(job_path).read_text(encoding="utf-8"))
    try:
        outcome = _run(job)
    except MemoryError:
        return EXIT_MEMORY
    except _RuntimeMissing as exc:
        _write(result_path, {"device_error": str(exc)})
        return EXIT_RUNTIME
    _write(result_path, outcome)
    return 0


class _RuntimeMissing(Exception):
    pass


def _run(job: dict) -> dict:
    import numpy as np

    from edge.benchmark import benchmark
    from edge.bundle import load_sample
    from edge.inference import TFLiteClassifier
    from edge.runtime import RuntimeMissingError, find_runtime

    bundle = Path(job["bundle"])
    try:
        runtime = find_runtime(job.get("runtime"))
    except RuntimeMissingError as exc:
        raise _RuntimeMissing(str(exc)) from exc
    images, labels = load_sample(bundle)
    try:
        classifier = TFLiteClassifier(bundle / MODEL_FILE, runtime, job.get("threads"))
    except RuntimeMissingError as exc:  # a NumPy ABI mismatch shows only when an interpreter is made
        raise _RuntimeMissing(str(exc)) from exc
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to load the model refuses it
        return {"refused": f"the runtime cannot load the model: {_first_line(exc)}"}
    problem = _shape_problem(classifier, images, labels, int(job["labels"]))
    if problem:
        return {"refused": problem}
    try:
        classifier.predict(images[0])
        result = benchmark(classifier, images, labels, int(job["warmup"]), int(job["runs"]), job.get("threads"))
    except MemoryError:
        raise
    except Exception as exc:  # noqa: BLE001 - the model failed while running
        return {"refused": f"test inference failed: {_first_line(exc)}"}
    if not all(np.isfinite(v) for v in result.metrics().values()):
        return {"refused": "the benchmark produced non-finite figures"}
    return {"result": asdict(result)}


def _shape_problem(classifier: object, images: object, labels: object, n_labels: int) -> str | None:
    """What the bundle claims about shapes, checked against the model itself."""
    import numpy as np

    outputs = int(np.prod(classifier.interpreter.get_output_details()[0]["shape"][1:]))  # type: ignore[attr-defined]
    if outputs != n_labels:
        return f"labels.txt names {n_labels} classes, the model has {outputs} outputs"
    expected = tuple(int(d) for d in classifier.input_shape[1:])  # type: ignore[attr-defined]
    if tuple(images.shape[1:]) != expected and int(np.prod(images.shape[1:])) != int(np.prod(expected)):  # type: ignore[attr-defined]
        return f"sample images are {tuple(images.shape[1:])}, the model takes {expected}"  # type: ignore[attr-defined]
    if len(images) == 0:  # type: ignore[arg-type]
        return "the sample holds no images"
    if labels.min() < 0 or labels.max() >= n_labels:  # type: ignore[attr-defined]
        return f"sample labels outside 0..{n_labels - 1}"
    return None


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:300] if text else type(exc).__name__


def _write(path: str, data: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as fh:
        json.dump(data, fh)
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1], sys.argv[2]))
