"""Batch-norm folding before QAT: same function, fewer layers (in its own tf_keras process, like the QAT worker)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from tests.conftest import REPO

_SCRIPT = """
import os, sys
os.environ["TF_USE_LEGACY_KERAS"] = "1"
import numpy as np, tf_keras
from steps.bn_fold import fold_batchnorms
from steps.config import TrainConfig
from steps.model import build
model = build(TrainConfig(model=sys.argv[1], weights="none"), 10, 32, keras=tf_keras)
rng = np.random.default_rng(0)
for layer in model.layers:  # statistics far from the identity, so a wrong fold shows
    if isinstance(layer, tf_keras.layers.BatchNormalization):
        g, b, m, v = layer.get_weights()
        layer.set_weights([rng.uniform(0.5, 1.5, g.shape), rng.normal(0, 0.1, b.shape),
                           rng.normal(0, 0.1, m.shape), rng.uniform(0.5, 2.0, v.shape)])
folded = fold_batchnorms(model, tf_keras)
x = rng.uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
bns = lambda m: sum(isinstance(l, tf_keras.layers.BatchNormalization) for l in m.layers)
print("RESULT", bns(model), bns(folded), float(np.abs(model.predict(x, verbose=0) - folded.predict(x, verbose=0)).max()))
"""


@pytest.mark.parametrize("arch, batchnorms", [("tiny_cnn", 4), ("efficientnet_b0", 50)])
def test_folding_removes_every_batchnorm_and_keeps_the_outputs(arch, batchnorms):
    proc = subprocess.run([sys.executable, "-c", _SCRIPT, arch], cwd=REPO, capture_output=True, text=True)
    line = [l for l in proc.stdout.splitlines() if l.startswith("RESULT")]
    assert line, proc.stderr[-3000:]
    before, after, diff = line[0].split()[1:]
    assert (int(before), int(after)) == (batchnorms, 0)
    assert float(diff) < 1e-5
