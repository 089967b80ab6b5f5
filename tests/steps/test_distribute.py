"""Training under MirroredStrategy, on two logical CPU devices (how several GPUs are used)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, background_job, background_result, run_tracked

SCRIPT = r"""
import json, sys
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import keras
from steps import data, distribute
from steps.config import DataConfig, TrainConfig
from steps.convert import convert
from steps.model import build
from steps.train import global_batch_size, keras_accuracy, train

devices = [d.name for d in tf.config.list_logical_devices("CPU")]
out = {"devices": devices,
       "off": distribute.strategy("off", devices).num_replicas_in_sync,
       "one_device": distribute.strategy("auto", devices[:1]).num_replicas_in_sync,
       "no_gpu": distribute.strategy("auto").num_replicas_in_sync}
cfg = DataConfig(dataset="digits", image_size=8)
tcfg = TrainConfig(model="tiny_cnn", weights="none", epochs=1, batch_size=16, learning_rate=1e-3)
splits = data.load(cfg)
strategy = distribute.strategy("auto", devices)
keras.utils.set_random_seed(0)
with strategy.scope():
    model = build(tcfg, 10, 8)

class Steps(keras.callbacks.Callback):
    count = 0
    def on_train_batch_end(self, batch, logs=None):
        Steps.count += 1

history = train(model, splits, cfg, tcfg, callbacks=[Steps()])
variable = model.trainable_variables[0].value
out.update(replicas=strategy.num_replicas_in_sync, kind=type(strategy).__name__,
           global_batch=global_batch_size(model, tcfg), steps=Steps.count, train_images=len(splits.train),
           mirrored_copies=len(getattr(variable, "values", [])), loss=float(history.history["loss"][-1]))
out["accuracy"] = keras_accuracy(model, splits, 16)
work = __import__("pathlib").Path(sys.argv[1])
model.save(work / "mirrored.keras")
out["reloaded_outputs"] = int(keras.models.load_model(work / "mirrored.keras").output_shape[-1])
out["tflite_bytes"] = convert(model, "fp32", None, work).stat().st_size
print("RESULT " + json.dumps(out))
"""


# Started in the background (tests/conftest.py) as soon as collection selects this module's test.
@background_job("mirrored", priority=-1, needs_server=False)
def _train_mirrored(_, work: Path) -> subprocess.CompletedProcess:
    return run_tracked([sys.executable, "-c", SCRIPT, str(work)], cwd=REPO, timeout=300)


@pytest.fixture(scope="module")
def mirrored(request: pytest.FixtureRequest) -> subprocess.CompletedProcess:
    return background_result(request, "mirrored")


def test_training_mirrors_over_two_logical_cpu_devices(mirrored):
    proc = mirrored
    assert proc.returncode == 0, proc.stderr[-4000:]
    (line,) = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    out = json.loads(line[len("RESULT "):])
    assert len(out["devices"]) == 2
    assert (out["off"], out["one_device"], out["no_gpu"]) == (1, 1, 1), "mirroring only with two or more devices"
    assert out["kind"] == "MirroredStrategy" and out["replicas"] == 2 and out["mirrored_copies"] == 2
    assert out["global_batch"] == 32, "batch_size is per replica"
    assert out["steps"] == -(-out["train_images"] // 32)
    assert out["loss"] == out["loss"] and out["loss"] < 10  # finite: the replicas trained one model
    assert 0.0 <= out["accuracy"] <= 1.0 and out["reloaded_outputs"] == 10, "evaluated, saved and loaded like any other"
    assert out["tflite_bytes"] > 0, "a mirrored model converts like any other"
