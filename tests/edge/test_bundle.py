"""Bundles: written by the pipeline, verified by the device, never unpickled."""
import json
import shutil

import numpy as np
import pytest

from edge import contract
from edge.bundle import BundleError, load_sample, sha256_file, verify_bundle, write_bundle


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
