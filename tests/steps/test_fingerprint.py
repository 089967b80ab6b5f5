"""Baseline identity: the code that shapes the model is in the reuse key; folders are fingerprinted once and cached."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from edge import contract
from steps import fingerprint
from steps.config import DataConfig, TrainConfig, baseline_key
from tests.conftest import MODEL_NAME
from tests.images import make_image_folder

DATA = DataConfig(dataset="digits", image_size=16)
TRAIN = TrainConfig(model="tiny_cnn", weights="none", epochs=10, learning_rate=0.001)


@pytest.fixture()
def steps_copy(tmp_path) -> Path:
    return Path(shutil.copytree(fingerprint.STEPS_DIR, tmp_path / "steps", ignore=shutil.ignore_patterns("__pycache__")))


@pytest.mark.parametrize("module", ["model.py", "train.py", "data.py", "baseline.py"])
def test_code_fingerprint_changes_with_model_or_training_code(steps_copy, module):
    before = fingerprint.code_fingerprint(steps_copy)
    with open(steps_copy / module, "a", encoding="utf-8") as fh:
        fh.write("\n# one more line\n")
    assert fingerprint.code_fingerprint(steps_copy) != before


def test_code_fingerprint_ignores_code_that_does_not_shape_the_model(steps_copy):
    before = fingerprint.code_fingerprint(steps_copy)
    with open(steps_copy / "report.py", "a", encoding="utf-8") as fh:
        fh.write("\n# a report change\n")
    assert fingerprint.code_fingerprint(steps_copy) == before


def test_baseline_key_changes_with_the_code_fingerprint():
    assert baseline_key(DATA, TRAIN, "data", "code-a") != baseline_key(DATA, TRAIN, "data", "code-b")
    assert baseline_key(DATA, TRAIN, "data", "code-a") == baseline_key(DATA, TRAIN, "data", "code-a")


def test_baseline_key_counts_a_weights_file_by_content_and_ignores_the_strategy(tmp_path):
    a, b = tmp_path / "a.weights.h5", tmp_path / "elsewhere" / "b.weights.h5"
    b.parent.mkdir()
    a.write_bytes(b"weights v1")
    b.write_bytes(b"weights v1")
    key = lambda train: baseline_key(DATA, train, "data", "code")  # noqa: E731
    same_a, same_b = TrainConfig(weights=str(a)), TrainConfig(weights=str(b))
    assert key(same_a) == key(same_b), "the same file under another path is the same baseline"
    b.write_bytes(b"weights v2")
    os.utime(b, ns=(b.stat().st_atime_ns, b.stat().st_mtime_ns + 10**9))
    assert key(same_a) != key(same_b), "other weights, other baseline"
    assert key(TrainConfig(distribute="off")) == key(TrainConfig(distribute="auto"))


def _classes(root: Path) -> dict[str, list[Path]]:
    return {d.name: sorted(d.iterdir()) for d in sorted(root.iterdir())}


def test_folder_is_read_once_then_comes_from_the_cache(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=5)
    cache = tmp_path / "cache"
    first = fingerprint.folder_fingerprint(root, _classes(root), cache)
    assert (first.hashed, first.cached) == (15, 0)
    again = fingerprint.folder_fingerprint(root, _classes(root), cache)
    assert (again.hashed, again.cached, again.digest) == (0, 15, first.digest)

    changed = root / "checks" / "000.jpg"
    shutil.copyfile(root / "stripes" / "000.jpg", changed)
    os.utime(changed, ns=(changed.stat().st_atime_ns, changed.stat().st_mtime_ns + 10**9))
    after = fingerprint.folder_fingerprint(root, _classes(root), cache)
    assert (after.hashed, after.cached) == (1, 14)
    assert after.digest != first.digest


def test_a_broken_image_is_found_among_cached_ones(tmp_path):
    root = make_image_folder(tmp_path / "images", per_class=5)
    cache = tmp_path / "cache"
    first = fingerprint.folder_fingerprint(root, _classes(root), cache)
    broken = root / "blobs" / "broken.jpg"
    broken.write_bytes(b"\xff\xd8 not a jpeg")
    found = fingerprint.folder_fingerprint(root, _classes(root), cache)
    assert [(b.path, b.reason) for b in found.bad] == [(broken, "unreadable")]
    assert (found.cached, found.digest) == (15, first.digest), "the digest covers the usable files"


def test_file_sha256_is_cached_by_size_and_mtime(tmp_path):
    f = tmp_path / "w.weights.h5"
    f.write_bytes(b"abc")
    stamp = f.stat().st_mtime_ns
    cache = tmp_path / "cache"
    first = fingerprint.file_sha256(f, cache)
    f.write_bytes(b"abd")  # same size, and the old mtime back: the cache answers without reading
    os.utime(f, ns=(stamp, stamp))
    assert fingerprint.file_sha256(f, cache) == first
    os.utime(f, ns=(stamp, stamp + 10**9))
    assert fingerprint.file_sha256(f, cache) != first


def test_session_baseline_was_keyed_with_the_code_and_logs_replicas(pipeline, client):
    """The pipeline's own key: recomputed here from the same parameters and the current code."""
    run = client.get_run(client.get_model_version(MODEL_NAME, pipeline.versions[contract.BASELINE]).run_id)
    params = run.data.params
    assert params["code_fingerprint"] == fingerprint.code_fingerprint()
    expected = baseline_key(DATA, TRAIN, params["data_fingerprint"], fingerprint.code_fingerprint())
    assert run.data.tags[contract.TAG_BASELINE_KEY] == expected
    assert (params["replicas"], params["global_batch_size"], params["distribute"]) == ("1", "16", "auto")
