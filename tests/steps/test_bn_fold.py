"""Batch-norm folding before QAT: same function, fewer layers (in its own tf_keras process, like the QAT worker)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, background_job, background_result, run_tracked

CASES = [("tiny_cnn", 4), ("efficientnet_b0", 50)]

# One process for every architecture: importing TensorFlow and tf_keras is most of the cost.
_SCRIPT = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np, tf_keras
from steps.bn_fold import fold_batchnorms
from steps.config import TrainConfig
from steps.model import build
for arch in sys.argv[1:]:
    model = build(TrainConfig(model=arch, weights="none"), 10, 32, keras=tf_keras)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # statistics far from the identity, so a wrong fold shows
        if isinstance(layer, tf_keras.layers.BatchNormalization):
            g, b, m, v = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                               rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2.0, v.shape)])
    folded = fold_batchnorms(model, tf_keras)
    x = rng.uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    bns = lambda m: sum(isinstance(l, tf_keras.layers.BatchNormalization) for l in m.layers)
    print("RESULT", arch, bns(model), bns(folded), float(np.abs(model.predict(x, verbose=0) - folded.predict(x, verbose=0)).max()),
          flush=True)
"""


# Started in the background (tests/conftest.py) as soon as collection selects a test of this module.
@background_job("folded", priority=-2, needs_server=False)
def _fold(_, work: Path) -> dict[str, tuple[str, str, str] | str]:
    """arch -> (batch norms before, after, largest output difference), or the process's stderr where it printed none."""
    proc = run_tracked([sys.executable, "-c", _SCRIPT, *(arch for arch, _ in CASES)], cwd=REPO, timeout=600)
    found = {}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            arch, *figures = line.split()[1:]
            found[arch] = tuple(figures)
    return {arch: found.get(arch, proc.stderr[-3000:]) for arch, _ in CASES}


@pytest.fixture(scope="module")
def folded(request: pytest.FixtureRequest) -> dict[str, tuple[str, str, str] | str]:
    return background_result(request, "folded")


@pytest.mark.parametrize("arch, batchnorms", CASES)
def test_folding_removes_every_batchnorm_and_keeps_the_outputs(folded, arch, batchnorms):
    result = folded[arch]
    assert isinstance(result, tuple), result
    before, after, diff = result
    assert (int(before), int(after)) == (batchnorms, 0)
    assert float(diff) < 1e-5
