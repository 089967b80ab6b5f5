"""The same bundles give the same predictions on LiteRT and on tflite-runtime 2.14 (in its own virtualenv)."""
from __future__ import annotations

import json

import pytest

from tests.edge import predictions
from tests.edge.runtime_venvs import run_in, runtime_python


def test_litert_and_tflite_runtime_2_14_agree_on_every_fixture_bundle(edge_bundles):
    here = predictions.predict(edge_bundles)
    if not here["runtime"].startswith("ai-edge-litert"):
        pytest.skip(f"LiteRT is not the runtime here ({here['runtime']}): check-arm.sh compares across machines")
    python = runtime_python("tflite-runtime-2.14")
    proc = run_in(python, predictions.__file__, "predict", *(f"{n}={d}" for n, d in edge_bundles.items()))
    assert proc.returncode == 0, proc.stderr[-3000:]
    other = json.loads(proc.stdout)
    assert other["runtime"] == "tflite-runtime 2.14.0" and other["numpy"].startswith("1.")
    assert set(other["bundles"]) == set(edge_bundles) >= {"fp32", "fp16", "dynamic", "int8"}
    summary, problems = predictions.compare(here, other)
    assert not problems, "\n".join(summary + problems)
    for name, entry in other["bundles"].items():
        assert entry["accuracy"] >= 0.9, (name, entry["accuracy"])  # both right, not both wrong alike


def test_compare_reports_a_flipped_top1_and_scores_beyond_tolerance(edge_bundles):
    """The agreement test can fail: one changed prediction or a score one tolerance off is a disagreement."""
    here = predictions.predict({name: edge_bundles[name] for name in ("int8", "fp32")})
    assert predictions.compare(here, here)[1] == []
    other = json.loads(json.dumps(here))
    int8 = other["bundles"]["int8"]
    int8["top1"][3] = (int8["top1"][3] + 1) % len(int8["scores"][3])
    fp32 = other["bundles"]["fp32"]
    fp32["scores"][0][0] += 2 * predictions.tolerance(here["bundles"]["fp32"])
    problems = predictions.compare(here, other)[1]
    assert any(p.startswith("int8: top-1 differs on images [3]") for p in problems), problems
    assert any(p.startswith("fp32: scores differ") for p in problems), problems


def test_tolerances_follow_the_quantization():
    assert predictions.tolerance({"output_scale": 1 / 256, "weights_int8": True}) == 2 / 256
    assert predictions.tolerance({"output_scale": 0.0, "weights_int8": True}) == predictions.DYNAMIC_TOLERANCE
    assert predictions.tolerance({"output_scale": 0.0, "weights_int8": False}) == predictions.FLOAT_TOLERANCE
