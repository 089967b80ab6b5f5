"""Datasets as 70/20/10 train/val/test splits of pixel images (float32, integer values 0..255).

Every consumer (training, calibration, evaluation, the device sample) sees the same
preprocessing: resize to ``image_size`` and round to whole pixel values, so the uint8
input of an int8 model carries exactly what the float model was trained on.
"""
from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tensorflow as tf

from steps.config import DataConfig

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif"}
_TFDS_HOST = ("download.microsoft.com", 443)


class DataError(ValueError):
    """The dataset cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class SourceInfo:
    """What a dataset is, learned cheaply before any heavy work."""

    labels: tuple[str, ...]
    counts: dict[str, int]
    fingerprint: str


@dataclass(frozen=True)
class Splits:
    train: tf.data.Dataset
    val: tf.data.Dataset
    test: tf.data.Dataset
    info: SourceInfo


def split_counts(n: int, cfg: DataConfig) -> dict[str, int]:
    """Train and validation rounded down, so small classes still give the test split its share."""
    train = int(n * cfg.train_fraction)
    val = int(n * cfg.val_fraction)
    return {"train": train, "val": val, "test": n - train - val}


def host_reachable(host: str, port: int, timeout_s: float = 3.0) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def inspect(cfg: DataConfig) -> SourceInfo:
    """Validate the dataset quickly and describe it; raises DataError with a one-line reason."""
    if cfg.dataset == "digits":
        info = _digits_info(cfg)
    elif cfg.dataset == "cats_vs_dogs":
        info = _cats_vs_dogs_info(cfg)
    else:
        info = _folder_info(cfg)
    if info.counts["test"] < cfg.min_test_images:
        raise DataError(
            f"only {info.counts['test']} test images in {cfg.dataset} (need {cfg.min_test_images}): "
            "add images or lower min_test_images"
        )
    return info


def load(cfg: DataConfig) -> Splits:
    info = inspect(cfg)
    if cfg.dataset == "digits":
        return _digits(cfg, info)
    if cfg.dataset == "cats_vs_dogs":
        return _cats_vs_dogs(cfg, info)
    return _folder(cfg, info)


def batched(ds: tf.data.Dataset, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    if shuffle_seed is not None:
        ds = ds.shuffle(2048, seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def to_arrays(ds: tf.data.Dataset, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Materialize (images uint8 N×H×W×3, labels int64) from an unbatched split."""
    if limit is not None:
        ds = ds.take(limit)
    images, labels = [], []
    for x, y in ds.batch(256).as_numpy_iterator():
        images.append(x.astype(np.uint8))
        labels.append(y.astype(np.int64))
    if not images:
        return np.zeros((0,), np.uint8), np.zeros((0,), np.int64)
    return np.concatenate(images), np.concatenate(labels)


def resize_pixels(image: tf.Tensor, size: int) -> tf.Tensor:
    """The one preprocessing step: resize, round to whole pixel values, clip to 0..255."""
    image = tf.image.resize(tf.cast(image, tf.float32), (size, size))
    return tf.clip_by_value(tf.round(image), 0.0, 255.0)


# --- digits (scikit-learn, offline) -------------------------------------------------

def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def _digits_info(cfg: DataConfig) -> SourceInfo:
    images, target = _digits_raw()
    fingerprint = hashlib.sha256(images.tobytes() + target.tobytes()).hexdigest()[:16]
    return SourceInfo(tuple(str(i) for i in range(10)), split_counts(len(target), cfg), fingerprint)


def _digits(cfg: DataConfig, info: SourceInfo) -> Splits:
    images, target = _digits_raw()
    pixels = (images * (255.0 / 16.0))[..., None].repeat(3, axis=-1).astype(np.float32)
    order = np.random.default_rng(cfg.seed).permutation(len(target))
    pixels, target = pixels[order], target[order].astype(np.int64)
    resized = resize_pixels(tf.constant(pixels), cfg.image_size).numpy()
    c = info.counts
    cut = [0, c["train"], c["train"] + c["val"], len(target)]
    parts = [tf.data.Dataset.from_tensor_slices((resized[a:b], target[a:b])) for a, b in zip(cut, cut[1:])]
    return Splits(*parts, info)


# --- cats_vs_dogs (TFDS, needs its download host the first time) ----------------------

def _cats_vs_dogs_builder(cfg: DataConfig):
    import tensorflow_datasets as tfds

    return tfds.builder("cats_vs_dogs", data_dir=cfg.data_dir)


def _cats_vs_dogs_info(cfg: DataConfig) -> SourceInfo:
    builder = _cats_vs_dogs_builder(cfg)
    if not tf.io.gfile.exists(str(builder.data_path)) and not host_reachable(*_TFDS_HOST):
        raise DataError(
            f"cats_vs_dogs is not prepared in {builder.data_dir} and {_TFDS_HOST[0]} is unreachable: "
            "run where the internet is reachable once, or use -P dataset=digits or an image folder"
        )
    n = builder.info.splits["train"].num_examples if builder.info.splits else 23262
    labels = tuple(builder.info.features["label"].names)
    return SourceInfo(labels, split_counts(n, cfg), f"tfds-cats_vs_dogs-{builder.version}")


def _cats_vs_dogs(cfg: DataConfig, info: SourceInfo) -> Splits:
    import tensorflow_datasets as tfds

    t, v = int(cfg.train_fraction * 100), int((cfg.train_fraction + cfg.val_fraction) * 100)
    splits = tfds.load(
        "cats_vs_dogs",
        split=[f"train[:{t}%]", f"train[{t}%:{v}%]", f"train[{v}%:]"],
        as_supervised=True,
        data_dir=cfg.data_dir,
    )
    prep = lambda x, y: (resize_pixels(x, cfg.image_size), tf.cast(y, tf.int64))  # noqa: E731
    train, val, test = (s.map(prep, num_parallel_calls=tf.data.AUTOTUNE) for s in splits)
    return Splits(train, val, test, info)


# --- image folder (one sub-folder per class) -----------------------------------------

def _folder_files(cfg: DataConfig) -> dict[str, list[Path]]:
    root = Path(cfg.dataset)
    if not root.is_dir():
        raise DataError(
            f"unknown dataset {cfg.dataset!r}: use cats_vs_dogs, digits, or a path to an image folder"
        )
    classes = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(f for f in sub.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            classes[sub.name] = files
    if len(classes) < 2:
        raise DataError(
            f"image folder {root} has {len(classes)} class sub-folder(s) with images; "
            "it needs at least 2 (one sub-folder per class)"
        )
    return classes


def _folder_info(cfg: DataConfig) -> SourceInfo:
    from PIL import Image, UnidentifiedImageError

    classes = _folder_files(cfg)
    digest = hashlib.sha256()
    for label, files in classes.items():
        for f in files:
            try:
                with Image.open(f) as img:
                    img.verify()
            except (UnidentifiedImageError, OSError, SyntaxError) as exc:
                raise DataError(f"unreadable image {f}: {exc}; remove or replace it") from exc
            digest.update(f"{label}/{f.name}".encode())
            digest.update(f.read_bytes())
    counts = {"train": 0, "val": 0, "test": 0}
    for files in classes.values():
        for k, v in split_counts(len(files), cfg).items():
            counts[k] += v
    return SourceInfo(tuple(classes), counts, digest.hexdigest()[:16])


def _folder(cfg: DataConfig, info: SourceInfo) -> Splits:
    classes = _folder_files(cfg)
    rng = np.random.default_rng(cfg.seed)
    parts: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for index, label in enumerate(info.labels):
        files = [str(f) for f in classes[label]]
        rng.shuffle(files)
        c = split_counts(len(files), cfg)
        parts["train"] += [(f, index) for f in files[: c["train"]]]
        parts["val"] += [(f, index) for f in files[c["train"] : c["train"] + c["val"]]]
        parts["test"] += [(f, index) for f in files[c["train"] + c["val"] :]]

    def load_image(path: tf.Tensor, label: tf.Tensor):
        image = tf.io.decode_image(tf.io.read_file(path), channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return resize_pixels(image, cfg.image_size), label

    def make(items: list[tuple[str, int]]) -> tf.data.Dataset:
        order = rng.permutation(len(items)) if items else []
        paths = [items[i][0] for i in order]
        labels = np.array([items[i][1] for i in order], dtype=np.int64)
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, dtype=tf.string), labels))
        return ds.map(load_image, num_parallel_calls=tf.data.AUTOTUNE)

    return Splits(make(parts["train"]), make(parts["val"]), make(parts["test"]), info)
