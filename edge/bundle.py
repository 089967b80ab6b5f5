"""The files of one model version, as a device downloads them.

A bundle is a directory with the ``.tflite`` model, ``labels.txt``, a small labelled
sample (``sample.npz``, plain arrays, never pickles) and ``manifest.json`` listing
each file's sha256. The pipeline writes bundles; the device verifies them.
"""
from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np

from edge.contract import LABELS_FILE, MANIFEST_FILE, MODEL_FILE, SAMPLE_FILE


class BundleError(ValueError):
    """A bundle failed verification."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bundle(
    directory: Path,
    tflite_path: Path,
    labels: list[str],
    sample_images: np.ndarray,
    sample_labels: np.ndarray,
) -> dict:
    """Write a bundle into ``directory``; returns its manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(tflite_path, directory / MODEL_FILE)
    (directory / LABELS_FILE).write_text("\n".join(labels) + "\n", encoding="utf-8")
    np.savez_compressed(
        directory / SAMPLE_FILE,
        images=np.asarray(sample_images, dtype=np.uint8),
        labels=np.asarray(sample_labels, dtype=np.int64),
    )
    manifest = {
        "files": {name: sha256_file(directory / name) for name in (MODEL_FILE, LABELS_FILE, SAMPLE_FILE)},
        "labels": labels,
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return manifest


def read_labels(directory: Path) -> list[str]:
    return [line for line in (directory / LABELS_FILE).read_text(encoding="utf-8").splitlines() if line]


def load_sample(directory: Path) -> tuple[np.ndarray, np.ndarray]:
    with np.load(directory / SAMPLE_FILE, allow_pickle=False) as data:
        return data["images"], data["labels"]


def verify_bundle(directory: Path, expected_model_sha256: str) -> None:
    """Check every file against the manifest and the model against the registry's sha256."""
    model_sha = sha256_file(directory / MODEL_FILE)
    if model_sha != expected_model_sha256:
        raise BundleError(
            f"{MODEL_FILE} sha256 {model_sha[:12]}… does not match the registry's {expected_model_sha256[:12]}…"
        )
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
        files = manifest["files"]
    except (OSError, ValueError, KeyError) as exc:
        raise BundleError(f"{MANIFEST_FILE} is missing or unreadable ({exc})") from exc
    for name, sha in files.items():
        if Path(name).name != name:
            raise BundleError(f"{MANIFEST_FILE} names a path outside the bundle: {name!r}")
        if sha256_file(directory / name) != sha:
            raise BundleError(f"{name} does not match its sha256 in {MANIFEST_FILE}")
