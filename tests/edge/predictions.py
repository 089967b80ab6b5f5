"""Every bundle's predictions on its own sample with whatever runtime runs here, and their comparison.

Runs in other virtualenvs and in the ARM roots of scripts/check-arm.sh, so it needs
only ``edge`` (installed, or this checkout) and NumPy:

    python tests/edge/predictions.py predict tests/edge/fixtures/*/ > here.json    # or NAME=DIR ...
    python tests/edge/predictions.py compare reference.json here.json   # exit 1 on disagreement
"""
from __future__ import annotations

import json
import platform
import sys
from pathlib import Path
from typing import Any

sys.path.append(str(Path(__file__).resolve().parents[2]))  # after an installed edge: that one is what is tested

import numpy as np  # noqa: E402

from edge.bundle import load_sample  # noqa: E402
from edge.contract import MODEL_FILE  # noqa: E402
from edge.inference import TFLiteClassifier  # noqa: E402
from edge.runtime import find_runtime  # noqa: E402

# Float models: both runtimes compute in float32 (fp16 weights are widened on load);
# they differ only in summation order.
FLOAT_TOLERANCE = 1e-4
# Dynamic range: activations are quantized to 8 bits at run time, and the runtimes do it
# with different kernels (asymmetric per row in LiteRT's XNNPACK, symmetric in TFLite 2.14).
DYNAMIC_TOLERANCE = 0.02
# Integer outputs: one rounding step may land either side, and propagate one more step.
INTEGER_STEPS = 2


def predict(bundles: dict[str, Path]) -> dict[str, Any]:
    """Top-1 and scores of every sample image of every bundle (name -> directory), with the runtime found here."""
    runtime = find_runtime()
    out: dict[str, Any] = {
        "runtime": runtime.label, "tf_equivalent": runtime.tf_equivalent, "numpy": np.__version__,
        "machine": platform.machine(), "python": platform.python_version(), "bundles": {},
    }
    for name, bundle in bundles.items():
        classifier = TFLiteClassifier(bundle / MODEL_FILE, runtime)
        images, labels = load_sample(bundle)
        scores = []
        for image in images:
            classifier.invoke(classifier.prepare(image))
            scores.append(classifier.scores().tolist())
        top1 = [int(np.argmax(s)) for s in scores]
        output = classifier.interpreter.get_output_details()[0]
        out["bundles"][name] = {
            "top1": top1, "scores": scores, "labels": [int(y) for y in labels],
            "accuracy": float(np.mean(np.asarray(top1) == labels)),
            "output_scale": float(output["quantization"][0]) if np.dtype(output["dtype"]).kind in "iu" else 0.0,
            "weights_int8": _has_int8_weights(classifier),
        }
    return out


def _has_int8_weights(classifier: TFLiteClassifier) -> bool:
    return any(np.dtype(t["dtype"]) == np.int8 for t in classifier.interpreter.get_tensor_details())


def tolerance(entry: dict[str, Any], integer_steps: int = INTEGER_STEPS) -> float:
    """How far two runtimes' scores for one bundle may differ."""
    if entry["output_scale"]:
        return integer_steps * entry["output_scale"]
    return DYNAMIC_TOLERANCE if entry["weights_int8"] else FLOAT_TOLERANCE


def compare(reference: dict[str, Any], other: dict[str, Any],
            integer_steps: int = INTEGER_STEPS) -> tuple[list[str], list[str]]:
    """(one summary line per bundle, the disagreements); no disagreements means the runtimes agree."""
    summary, problems = [], []
    for name, ref in sorted(reference["bundles"].items()):
        got = other["bundles"].get(name)
        if got is None:
            problems.append(f"{name}: missing from {other['runtime']}")
            continue
        flipped = [i for i, (a, b) in enumerate(zip(ref["top1"], got["top1"])) if a != b]
        if len(got["top1"]) != len(ref["top1"]):
            problems.append(f"{name}: {len(got['top1'])} predictions, expected {len(ref['top1'])}")
        if flipped:
            problems.append(f"{name}: top-1 differs on images {flipped} ({[ref['top1'][i] for i in flipped]} vs "
                            f"{[got['top1'][i] for i in flipped]})")
        diff = float(np.max(np.abs(np.asarray(ref["scores"]) - np.asarray(got["scores"]))))
        limit = tolerance(ref, integer_steps)
        if diff > limit:
            problems.append(f"{name}: scores differ by up to {diff:.6f} (tolerance {limit:.6f})")
        summary.append(f"{name}: top-1 equal on {len(ref['top1']) - len(flipped)}/{len(ref['top1'])}, "
                       f"max score diff {diff:.6f} (tolerance {limit:.6f}), accuracy {got['accuracy']:.3f}")
    return summary, problems


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[0] == "predict":
        named = (arg.split("=", 1) if "=" in arg else (Path(arg).name, arg) for arg in argv[1:])
        json.dump(predict({name: Path(path) for name, path in named}), sys.stdout)
        return 0
    if len(argv) == 3 and argv[0] == "compare":
        reference, other = (json.loads(Path(p).read_text()) for p in argv[1:])
        summary, problems = compare(reference, other)
        for line in summary + problems:
            print(f"  {line}")
        verdict = "agree" if not problems else "DISAGREE"
        print(f"{other['runtime']} ({other['machine']}) vs {reference['runtime']} ({reference['machine']}): {verdict}")
        return 0 if not problems else 1
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
