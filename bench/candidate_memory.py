"""What the article's model needs inside the candidate's bounded child: ``python -m bench.candidate_memory``.

EfficientNet-B0 at 224×224 (bench.models, random weights) in every variant, each
written as a bundle with a 32-image sample and checked exactly as a device does
(edge.sandbox.run_candidate: load, sample check, benchmark). The child's peak RSS
against the default ``--max-rss-mb`` says whether the default suits the article's setup.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from bench.models import efficientnet_variants
from edge.bundle import write_bundle
from edge.sandbox import DEFAULT_MAX_RSS_MB, CandidateJob, SandboxLimits, run_candidate

SAMPLE = 32


def run() -> str:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(SAMPLE, 224, 224, 3), dtype=np.uint8)
    labels = rng.integers(0, 2, size=SAMPLE)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for variant, model in efficientnet_variants().items():
            bundle = Path(tmp) / variant
            write_bundle(bundle, model, ["cat", "dog"], images, labels)
            start = time.perf_counter()
            result = run_candidate(CandidateJob(bundle, labels=2, runs=20, warmup=2), SandboxLimits(), Path(tmp))
            rows.append((variant, model.stat().st_size / 1e6, result.peak_rss_mb, time.perf_counter() - start))
    lines = ["## The article's model in the candidate's child (`python -m bench.candidate_memory`)", "",
             f"EfficientNet-B0 224×224, {SAMPLE}-image sample, 20 timed runs; default --max-rss-mb {DEFAULT_MAX_RSS_MB:g}.", "",
             "| variant | model MB | child peak RSS MB | share of the default limit | seconds (start-up included) |",
             "|---|---|---|---|---|"]
    lines += [f"| {v} | {size:.1f} | {rss:.0f} | {rss / DEFAULT_MAX_RSS_MB:.0%} | {secs:.1f} |" for v, size, rss, secs in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run())
