"""Bad input: a clear one-line error before training, non-zero exit, nothing registered."""
from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from edge.contract import ExitCode
from tests.conftest import REPO, run_pipeline
from tests.images import make_image_folder
from tests.servers import free_port

SMALL = ["--model", "tiny_cnn", "--weights", "none", "--image-size", "16", "--epochs", "1"]


def _folder(tmp_path, kind: str):
    root = tmp_path / kind
    if kind == "missing":
        return str(root / "images")  # neither it nor its parent exists
    root.mkdir()
    if kind == "one_class":
        make_image_folder(root, per_class=10, classes=("stripes",))
    elif kind == "unreadable":
        make_image_folder(root, per_class=10, classes=("stripes", "checks"))
        (root / "checks" / "broken.jpg").write_bytes(b"\xff\xd8 definitely not a jpeg")
    elif kind == "too_few":
        make_image_folder(root, per_class=5, classes=("stripes", "checks"))
    return str(root)


CASES = {
    "unknown quant": (["--quant", "int4", "--dataset", "digits"], "Invalid value for '--quant'"),
    "unknown dataset": (["--dataset", "no-such-dataset"], "unknown dataset 'no-such-dataset'"),
    "dataset path that does not exist": (["--dataset", "@missing"], "/missing/images does not exist"),
    "unknown model": (["--dataset", "digits", "--model", "resnet9000"], "unknown model 'resnet9000'"),
    "empty folder": (["--dataset", "@empty"], "0 class sub-folder(s)"),
    "one-class folder": (["--dataset", "@one_class"], "1 class sub-folder(s)"),
    "unreadable image": (["--dataset", "@unreadable"], "unreadable image"),
    "too few test images": (["--dataset", "@too_few", "--min-test-images", "20"], "only 2 test images"),
    "too few calibration images": (["--dataset", "digits", "--calibration-images", "10"], "at least 100"),
    "pretrained tiny model": (["--dataset", "digits", "--weights", "imagenet"], "tiny_cnn has no pretrained weights"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_fails_fast_with_one_line(case, server, client, tmp_path):
    args, expected = CASES[case]
    args = [_folder(tmp_path, a[1:]) if a.startswith("@") else a for a in args]
    name = "edgeq-bad-" + case.replace(" ", "-")
    proc = run_pipeline(server.uri, *SMALL, *args, "--registered-model", name)
    assert proc.returncode == ExitCode.BAD_CONFIG
    last = proc.stderr.strip().splitlines()[-1]
    assert expected in last, proc.stderr[-2000:]
    assert "Epoch" not in proc.stdout + proc.stderr
    assert not client.search_registered_models(f"name = '{name}'")


def test_missing_tracking_server_is_one_line(tmp_path):
    proc = run_pipeline(f"http://127.0.0.1:{free_port()}", *SMALL, "--dataset", "digits")
    assert proc.returncode == ExitCode.UNREACHABLE
    assert "is not reachable" in proc.stderr.strip().splitlines()[-1]


def _offline_pipeline(uri: str, *args: str) -> subprocess.CompletedProcess:
    """The pipeline with both download hosts (TFDS's, Keras' weights') set to a loopback port nothing listens
    on: offline for certain, so no real download starts even where this machine reaches the internet."""
    code = ("import sys, steps.data, steps.model, steps.pipeline\n"
            f"steps.data._TFDS_HOST = steps.model._WEIGHTS_HOST = ('127.0.0.1', {free_port()})\n"
            "sys.argv[0] = 'steps.pipeline'\n"
            "steps.pipeline.main()\n")
    env = dict(os.environ, MLFLOW_TRACKING_URI=uri, MLFLOW_EXPERIMENT_NAME="edgeq-tests", PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=600)


def test_offline_cats_vs_dogs_fails_within_seconds(server, tmp_path):
    start = time.monotonic()
    proc = _offline_pipeline(server.uri, *SMALL, "--dataset", "cats_vs_dogs", "--data-dir", str(tmp_path))
    assert proc.returncode == ExitCode.BAD_CONFIG, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    # The host named is the unreachable one set above: the check ran against it, not the internet.
    assert "cats_vs_dogs is not prepared" in last and "127.0.0.1 is unreachable" in last, last
    assert time.monotonic() - start < 60
    assert not any(tmp_path.iterdir()), "something was downloaded or prepared"


def test_offline_imagenet_weights_fail_clearly(server, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    proc = _offline_pipeline(server.uri, "--model", "efficientnet_b0", "--weights", "imagenet", "--dataset", "digits")
    assert proc.returncode == ExitCode.BAD_CONFIG, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert "ImageNet weights are not cached" in last and "127.0.0.1 is unreachable" in last, last
    assert not list(tmp_path.rglob("*.h5")), "weights were downloaded"
