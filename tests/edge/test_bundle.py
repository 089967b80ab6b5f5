"""Bundles: written by the pipeline, verified by the device, never unpickled."""
import json
import shutil

import numpy as np
import pytest

from edge import contract
from edge.bundle import BundleError, label_tags, labels_text, load_sample, read_labels, sha256_file, verify_bundle, write_bundle


@pytest.fixture()
def bundle(edge_bundles, tmp_path):
    copy = tmp_path / "bundle"
    shutil.copytree(edge_bundles["int8"], copy)
    return copy


def test_a_registered_bundle_verifies(bundle):
    verify_bundle(bundle, sha256_file(bundle / contract.MODEL_FILE))


def test_wrong_registry_sha_is_rejected(bundle):
    with pytest.raises(BundleError, match="does not match the registry"):
        verify_bundle(bundle, "f" * 64)


@pytest.mark.parametrize("name", [contract.LABELS_FILE, contract.SAMPLE_FILE])
def test_a_tampered_side_file_is_rejected(bundle, name):
    with open(bundle / name, "ab") as fh:
        fh.write(b"x")
    with pytest.raises(BundleError, match=name):
        verify_bundle(bundle, sha256_file(bundle / contract.MODEL_FILE))


def test_manifest_may_not_point_outside_the_bundle(bundle):
    manifest = json.loads((bundle / contract.MANIFEST_FILE).read_text())
    manifest["files"]["../escape"] = "0" * 64
    (bundle / contract.MANIFEST_FILE).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="outside"):
        verify_bundle(bundle, sha256_file(bundle / contract.MODEL_FILE))


def test_sample_with_pickled_objects_is_refused(bundle):
    np.savez(bundle / contract.SAMPLE_FILE, images=np.array([object()], dtype=object), labels=np.zeros(1))
    with pytest.raises(ValueError, match="pickle"):
        load_sample(bundle)


def test_write_bundle_round_trip(edge_bundles, tmp_path):
    images = np.zeros((3, 16, 16, 3), np.uint8)
    manifest = write_bundle(tmp_path / "b", edge_bundles["fp32"] / contract.MODEL_FILE, ["a", "b"], images, np.array([0, 1, 1]))
    verify_bundle(tmp_path / "b", manifest["files"][contract.MODEL_FILE])
    loaded, labels = load_sample(tmp_path / "b")
    assert loaded.shape == images.shape and labels.tolist() == [0, 1, 1]


def _relabel(bundle, labels: list[str]) -> None:
    """Rewrite labels.txt and the manifest consistently: only the version's tags can tell."""
    (bundle / contract.LABELS_FILE).write_text(labels_text(labels), encoding="utf-8")
    manifest = json.loads((bundle / contract.MANIFEST_FILE).read_text())
    manifest["labels"] = labels
    manifest["files"][contract.LABELS_FILE] = sha256_file(bundle / contract.LABELS_FILE)
    (bundle / contract.MANIFEST_FILE).write_text(json.dumps(manifest))


def test_a_thousand_long_labels_are_checked_by_digest_never_by_a_cut_tag(bundle):
    labels = [f"class-{i:04d}-of-a-large-dataset" for i in range(1000)]  # 25+ characters each
    _relabel(bundle, labels)
    tags = label_tags(labels)
    assert contract.TAG_LABELS not in tags, "26,000 characters do not fit: no tag rather than a truncated one"
    assert tags[contract.TAG_LABELS_COUNT] == "1000"
    model_sha = sha256_file(bundle / contract.MODEL_FILE)
    assert verify_bundle(bundle, model_sha, tags) == labels
    _relabel(bundle, labels[:-1] + ["something-else"])
    with pytest.raises(BundleError, match=contract.TAG_LABELS_SHA256):
        verify_bundle(bundle, model_sha, tags)
    _relabel(bundle, labels[:-1])
    with pytest.raises(BundleError, match=contract.TAG_LABELS_SHA256):
        verify_bundle(bundle, model_sha, tags)


def test_a_version_registered_before_the_digest_tags_still_verifies(bundle):
    labels = read_labels(bundle)
    model_sha = sha256_file(bundle / contract.MODEL_FILE)
    assert verify_bundle(bundle, model_sha, {contract.TAG_LABELS: ",".join(labels)}) == labels
    with pytest.raises(BundleError, match="labels tag disagree"):
        verify_bundle(bundle, model_sha, {contract.TAG_LABELS: ",".join(reversed(labels))})
    with pytest.raises(BundleError, match=contract.TAG_LABELS_COUNT):
        verify_bundle(bundle, model_sha, {contract.TAG_LABELS_COUNT: str(len(labels) + 1)})
