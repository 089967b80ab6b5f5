"""The files of one model version, as a device downloads them.

A bundle is a directory with the ``.tflite`` model, ``labels.txt``, a small labelled
sample (``sample.npz``, plain arrays, never pickles) and ``manifest.json`` listing
each file's sha256. The pipeline writes bundles; the device verifies them.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import zipfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from edge.contract import (LABELS_FILE, LABELS_TAG_MAX_CHARS, MANIFEST_FILE, MODEL_FILE, SAMPLE_FILE, TAG_LABELS,
                           TAG_LABELS_COUNT, TAG_LABELS_SHA256)


BUNDLE_FILES = frozenset((MODEL_FILE, LABELS_FILE, SAMPLE_FILE))  # what manifest.json lists, exactly
MAX_SAMPLE_IMAGES = 20_000  # far above what any gate needs; a sample claiming more is not one
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def is_sha256(text: object) -> bool:
    """Whether ``text`` is a sha256 digest as edgeq writes them (64 lowercase hex digits)."""
    return isinstance(text, str) and bool(_SHA256_RE.fullmatch(text))
_NPY_HEADER_READERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


class BundleError(ValueError):
    """A bundle failed verification."""


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def labels_text(labels: list[str] | tuple[str, ...]) -> str:
    """labels.txt: one name a line."""
    return "\n".join(labels) + "\n"


def labels_sha256(labels: list[str] | tuple[str, ...]) -> str:
    return hashlib.sha256(labels_text(labels).encode("utf-8")).hexdigest()


def label_tags(labels: list[str] | tuple[str, ...]) -> dict[str, str]:
    """A version's label tags: sha256 and count always, the joined names only while they fit (never cut short)."""
    tags = {TAG_LABELS_SHA256: labels_sha256(labels), TAG_LABELS_COUNT: str(len(labels))}
    joined = ",".join(labels)
    if len(joined) <= LABELS_TAG_MAX_CHARS:
        tags[TAG_LABELS] = joined
    return tags


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
    (directory / LABELS_FILE).write_text(labels_text(labels), encoding="utf-8")
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


def verify_bundle(directory: Path, expected_model_sha256: str, version_tags: Mapping[str, str] | None = None) -> list[str]:
    """Check everything the bundle claims; returns its labels.

    The model against the registry's sha256; manifest.json lists exactly the bundle's
    files, each matching its sha256; labels.txt, the manifest's labels and the version's
    label tags (those it has: ``labels_sha256``, ``labels_count``, and ``labels``, which
    versions registered before the digest carry alone) agree; the sample's arrays are what
    a sample is, judged from their headers before anything loads them.
    """
    model_sha = sha256_file(directory / MODEL_FILE)
    if model_sha != expected_model_sha256:
        raise BundleError(
            f"{MODEL_FILE} sha256 {model_sha[:12]}… does not match the registry's {expected_model_sha256[:12]}…"
        )
    manifest = read_manifest(directory)
    for name, sha in manifest["files"].items():
        if sha256_file(directory / name) != sha:
            raise BundleError(f"{name} does not match its sha256 in {MANIFEST_FILE}")
    try:
        labels = read_labels(directory)
    except UnicodeDecodeError as exc:
        raise BundleError(f"{LABELS_FILE} is not UTF-8 text ({exc.reason})") from exc
    if labels != manifest["labels"]:
        raise BundleError(f"{LABELS_FILE} ({len(labels)} names) and the labels in {MANIFEST_FILE} "
                          f"({len(manifest['labels'])} names) disagree")
    _check_label_tags(labels, version_tags or {})
    check_sample_header(directory)
    return labels


def _check_label_tags(labels: list[str], tags: Mapping[str, str]) -> None:
    if TAG_LABELS_SHA256 in tags and tags[TAG_LABELS_SHA256] != labels_sha256(labels):
        raise BundleError(f"{LABELS_FILE} ({len(labels)} names) does not match the version's {TAG_LABELS_SHA256} tag")
    if TAG_LABELS_COUNT in tags and tags[TAG_LABELS_COUNT] != str(len(labels)):
        raise BundleError(f"{LABELS_FILE} has {len(labels)} names, the version's {TAG_LABELS_COUNT} tag says {tags[TAG_LABELS_COUNT]}")
    if TAG_LABELS in tags and tags[TAG_LABELS] != ",".join(labels):
        raise BundleError(f"{LABELS_FILE} and the version's labels tag disagree")


def read_manifest(directory: Path) -> dict:
    """manifest.json as ``{"files": {name: sha256}, "labels": [str]}``; BundleError naming what is off."""
    try:
        manifest = json.loads((directory / MANIFEST_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BundleError(f"{MANIFEST_FILE} is missing or not JSON ({exc})") from exc
    files = manifest.get("files") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise BundleError(f"{MANIFEST_FILE} has no 'files' object of name: sha256")
    for name, sha in files.items():
        if Path(name).name != name or name in ("", ".", ".."):
            raise BundleError(f"{MANIFEST_FILE} names a path outside the bundle: {name!r}")
        if not is_sha256(sha):
            raise BundleError(f"{MANIFEST_FILE} gives {name!r} no sha256")
    if set(files) != BUNDLE_FILES:
        extra, missing = sorted(set(files) - BUNDLE_FILES), sorted(BUNDLE_FILES - set(files))
        raise BundleError(f"{MANIFEST_FILE} must list exactly {', '.join(sorted(BUNDLE_FILES))}"
                          + (f"; it also names {extra}" if extra else "") + (f"; it lacks {missing}" if missing else ""))
    labels = manifest.get("labels")
    if not isinstance(labels, list) or not labels or not all(isinstance(x, str) and x for x in labels):
        raise BundleError(f"{MANIFEST_FILE} has no list of label names")
    return manifest


def check_sample_header(directory: Path) -> tuple[int, ...]:
    """The sample's image shape (N, H, W, C) from the .npy headers, without loading (or inflating) the arrays."""
    shapes = {}
    try:
        with zipfile.ZipFile(directory / SAMPLE_FILE) as archive:
            for name in ("images", "labels"):
                with archive.open(f"{name}.npy") as fh:
                    read_header = _NPY_HEADER_READERS.get(np.lib.format.read_magic(fh))
                    if read_header is None:
                        raise ValueError(f"{name}.npy has an .npy format version this device does not read")
                    shape, _, dtype = read_header(fh)
                shapes[name] = (tuple(int(d) for d in shape), np.dtype(dtype))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise BundleError(f"{SAMPLE_FILE} is not a sample of images and labels ({exc})") from exc
    (image_shape, image_dtype), (label_shape, label_dtype) = shapes["images"], shapes["labels"]
    if len(image_shape) != 4 or image_dtype != np.uint8:
        raise BundleError(f"{SAMPLE_FILE} images are {image_dtype} {image_shape}, not uint8 (N, H, W, C)")
    if label_shape != image_shape[:1] or label_dtype.kind not in "iu":
        raise BundleError(f"{SAMPLE_FILE} labels are {label_dtype} {label_shape}, not {image_shape[0]} integers")
    if not 0 < image_shape[0] <= MAX_SAMPLE_IMAGES:
        raise BundleError(f"{SAMPLE_FILE} claims {image_shape[0]} images; a sample holds 1 to {MAX_SAMPLE_IMAGES}")
    return image_shape
