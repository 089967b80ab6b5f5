"""Bad input: a clear one-line error before training, non-zero exit, nothing registered."""
from __future__ import annotations

import time

import pytest

from tests.conftest import run_pipeline
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
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert expected in last, proc.stderr[-2000:]
    assert "Epoch" not in proc.stdout + proc.stderr
    assert not client.search_registered_models(f"name = '{name}'")


def test_missing_tracking_server_is_one_line(tmp_path):
    proc = run_pipeline(f"http://127.0.0.1:{free_port()}", *SMALL, "--dataset", "digits")
    assert proc.returncode != 0
    assert "is not reachable" in proc.stderr.strip().splitlines()[-1]


def test_offline_cats_vs_dogs_fails_within_seconds(server, tmp_path):
    start = time.monotonic()
    proc = run_pipeline(server.uri, *SMALL, "--dataset", "cats_vs_dogs", "--data-dir", str(tmp_path))
    assert proc.returncode != 0
    assert "cats_vs_dogs is not prepared" in proc.stderr.strip().splitlines()[-1]
    assert time.monotonic() - start < 60


def test_offline_imagenet_weights_fail_clearly(server, tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))
    proc = run_pipeline(server.uri, "--model", "efficientnet_b0", "--weights", "imagenet", "--dataset", "digits")
    assert proc.returncode != 0
    assert "ImageNet weights are not cached" in proc.stderr.strip().splitlines()[-1]
