"""Datasets as 70/20/10 train/val/test splits of pixel images (integer values 0..255).

Every consumer (training, calibration, evaluation, the device sample) sees the same
preprocessing: resize to ``image_size`` and round to whole pixel values, so the uint8
input of an int8 model carries exactly what the float model was trained on.

Splits stream: training shuffles what is cheap to hold (file names, encoded records,
cache indices) and decodes after, evaluation reads batch by batch, and the decoded
uint8 images are cached once per run (``steps.input_cache``).
"""
from __future__ import annotations

import hashlib
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import tensorflow as tf

from steps import folder_scan, image_file
from steps.config import DataConfig
from steps.input_cache import Budget, CacheConfig, DiskStore, MemoryStore, new_store
from steps.splits import split_counts as _split_counts
from steps.splits import tfds_specs

_TFDS_HOST = ("download.microsoft.com", 443)
# Encoded TFDS records held for shuffling (about 30 kB each for cats_vs_dogs).
_ENCODED_SHUFFLE_BUFFER = 4096
_BUILD_BATCH = 128


class DataError(ValueError):
    """The dataset cannot be used; the message says why and what to do."""


@dataclass(frozen=True)
class SourceInfo:
    """What a dataset is, learned cheaply before any heavy work."""

    labels: tuple[str, ...]
    counts: dict[str, int]
    fingerprint: str
    scan: folder_scan.FolderScan | None = None  # an image folder's files, skips and per-class split


class Split:
    """``size`` images in a fixed order, as (uint8 H×W×3, int64 label) pairs.

    ``items`` are cheap elements (file names, encoded records, small raw arrays) that
    ``decode`` turns into resized pixels, so a shuffle holds items, never decoded images.
    With a cache plan, the first full read decodes everything once into a uint8 store;
    every later read gathers from it, shuffling indices.
    """

    def __init__(self, name: str, items: tf.data.Dataset, decode: Callable, size: int, image_size: int,
                 shuffle_buffer: int | None = None, budget: Budget | None = None):
        self.name, self.items, self.decode, self.size = name, items, decode, size
        self.shape = (image_size, image_size, 3)
        self.shuffle_buffer = max(1, shuffle_buffer or size)
        self._budget = budget
        self.store: MemoryStore | DiskStore | None = None
        self._labels: np.ndarray | None = None

    def __len__(self) -> int:
        return self.size

    # --- the cache ---------------------------------------------------------------

    def ensure_cached(self) -> None:
        """Decode and resize every image once into the store chosen by the cache budget."""
        if self.store is not None or self._budget is None or self.size == 0:
            return
        place = self._budget.place(self.size * int(np.prod(self.shape)))
        if place is None:
            return
        store = new_store(place, self.size, self.shape, self._budget.config, self.name)
        labels = np.empty(self.size, np.int64)
        done = 0
        for images, batch_labels in self._decoded().batch(_BUILD_BATCH).prefetch(2).as_numpy_iterator():
            store.write(done, images)
            labels[done : done + len(images)] = batch_labels
            done += len(images)
        if done != self.size:
            raise DataError(f"{self.name} split has {done} images, expected {self.size}: the dataset changed while loading")
        self.store, self._labels = store, labels

    def _gather(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return self.store.gather(indices), self._labels[indices]

    def _from_store(self, indices: tf.data.Dataset) -> tf.data.Dataset:
        """Batches of indices -> batches of (uint8 images, labels) read from the store."""

        def gather(idx):
            images, labels = tf.numpy_function(self._gather, [idx], [tf.uint8, tf.int64], stateful=False)
            images.set_shape([None, *self.shape])
            labels.set_shape([None])
            return images, labels

        return indices.map(gather, num_parallel_calls=tf.data.AUTOTUNE)

    # --- reading -----------------------------------------------------------------

    def _decoded(self, shuffle_seed: int | None = None) -> tf.data.Dataset:
        ds = self.items
        if shuffle_seed is not None:
            ds = ds.shuffle(self.shuffle_buffer, seed=shuffle_seed, reshuffle_each_iteration=True)
        return ds.map(self.decode, num_parallel_calls=tf.data.AUTOTUNE)

    def pixels(self, shuffle_seed: int | None = None) -> tf.data.Dataset:
        """Unbatched (uint8 image, int64 label); reads the cache if it is built, never builds it."""
        if self.store is None:
            return self._decoded(shuffle_seed)
        return self._from_store(self._indices(shuffle_seed).batch(_BUILD_BATCH)).unbatch()

    def _indices(self, shuffle_seed: int | None) -> tf.data.Dataset:
        """Positions in the store, in order or shuffled (anew each epoch)."""
        indices = tf.data.Dataset.range(self.size)
        if shuffle_seed is not None:
            indices = indices.shuffle(self.size, seed=shuffle_seed, reshuffle_each_iteration=True)
        return indices

    def dataset(self, shuffle_seed: int | None = None) -> tf.data.Dataset:
        """Unbatched (float32 image 0..255, int64 label): what the model takes."""
        return self.pixels(shuffle_seed).map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)

    def batches(self, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
        """Batched float32 model input; a full read, so it builds the cache first."""
        self.ensure_cached()
        if self.store is None:
            ds = self._decoded(shuffle_seed).batch(batch_size)
        else:
            ds = self._from_store(self._indices(shuffle_seed).batch(batch_size))
        return ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)

    def numpy_batches(self, batch_size: int = 64) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(uint8 images, int64 labels) in order, batch by batch: the evaluator's input."""
        self.ensure_cached()
        if self.store is None:
            yield from self._decoded().batch(batch_size).prefetch(2).as_numpy_iterator()
            return
        for start in range(0, self.size, batch_size):
            stop = min(start + batch_size, self.size)
            yield self.store.read(start, stop), self._labels[start:stop]


@dataclass(frozen=True)
class Splits:
    train: Split
    val: Split
    test: Split
    info: SourceInfo


def _to_float(image: tf.Tensor, label: tf.Tensor):
    return tf.cast(image, tf.float32), label


def split_counts(n: int, cfg: DataConfig) -> dict[str, int]:
    """Train and validation rounded down (exactly), so small classes still give the test split its share."""
    return _split_counts(n, cfg.train_fraction, cfg.val_fraction)


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


def load(cfg: DataConfig, info: SourceInfo | None = None, cache: CacheConfig | None = None) -> Splits:
    """The three splits; ``info`` from an earlier ``inspect`` saves a second pass over the data."""
    info = info or inspect(cfg)
    cache = cache or CacheConfig()
    budget = Budget(cache)
    if cfg.dataset == "digits":
        parts = _digits(cfg, info)
    elif cfg.dataset == "cats_vs_dogs":
        parts = _cats_vs_dogs(cfg)
    else:
        parts = _folder(cfg, info)
    splits = [Split(name, items, decode, size, cfg.image_size, buffer, budget)
              for name, (items, decode, size, buffer) in zip(("train", "val", "test"), parts)]
    return Splits(*splits, info)


def batched(ds: Split | tf.data.Dataset, batch_size: int, shuffle_seed: int | None = None) -> tf.data.Dataset:
    if isinstance(ds, Split):
        return ds.batches(batch_size, shuffle_seed)
    if shuffle_seed is not None:
        ds = ds.shuffle(2048, seed=shuffle_seed, reshuffle_each_iteration=True)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def to_arrays(ds: Split | tf.data.Dataset, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Materialize (images uint8 N×H×W×3, labels int64) from a split; meant for small ``limit``s."""
    if isinstance(ds, Split):
        ds = ds.pixels()
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


def _uint8_pixels(image: tf.Tensor, size: int) -> tf.Tensor:
    return tf.cast(resize_pixels(image, size), tf.uint8)


# --- digits (scikit-learn, offline) -------------------------------------------------

def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    return digits.images, digits.target


def _digits_info(cfg: DataConfig) -> SourceInfo:
    images, target = _digits_raw()
    digest = hashlib.sha256(images.tobytes() + target.tobytes()).hexdigest()[:16]
    return SourceInfo(tuple(str(i) for i in range(10)), split_counts(len(target), cfg), digest)


def _digits(cfg: DataConfig, info: SourceInfo) -> list[tuple]:
    images, target = _digits_raw()
    pixels = (images * (255.0 / 16.0))[..., None].repeat(3, axis=-1).astype(np.float32)
    order = np.random.default_rng(cfg.seed).permutation(len(target))
    pixels, target = pixels[order], target[order].astype(np.int64)
    decode = lambda x, y: (_uint8_pixels(x, cfg.image_size), y)  # noqa: E731
    c = info.counts
    cut = [0, c["train"], c["train"] + c["val"], len(target)]
    # The 8×8 originals are the items: a full shuffle of them costs nothing.
    return [(tf.data.Dataset.from_tensor_slices((pixels[a:b], target[a:b])), decode, b - a, None)
            for a, b in zip(cut, cut[1:])]


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


def _cats_vs_dogs(cfg: DataConfig) -> list[tuple]:
    import tensorflow_datasets as tfds

    builder = _cats_vs_dogs_builder(cfg)
    builder.download_and_prepare()
    counts = split_counts(builder.info.splits["train"].num_examples, cfg)
    specs = tfds_specs("train", counts)
    # Records stay encoded (about 30 kB) until after the shuffle; decoding comes last.
    datasets = builder.as_dataset(split=specs, as_supervised=True, decoders={"image": tfds.decode.SkipDecoding()})

    def decode(encoded: tf.Tensor, label: tf.Tensor):
        image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
        image.set_shape([None, None, 3])
        return _uint8_pixels(image, cfg.image_size), tf.cast(label, tf.int64)

    return [(ds, decode, counts[name], _ENCODED_SHUFFLE_BUFFER) for ds, name in zip(datasets, ("train", "val", "test"))]


# --- image folder (one sub-folder per class) -----------------------------------------

def _folder_root(cfg: DataConfig) -> Path:
    root = Path(cfg.dataset).expanduser()
    if root.is_dir():
        return root
    if root.exists():
        raise DataError(f"dataset path {root} is a file, not a folder: give an image folder with one sub-folder per class")
    if any(sep in cfg.dataset for sep in ("/", "\\")) or cfg.dataset.startswith((".", "~")):
        raise DataError(f"dataset path {root} does not exist: give an existing image folder (one sub-folder per class), "
                        "or use cats_vs_dogs or digits")
    raise DataError(f"unknown dataset {cfg.dataset!r}: it is not cats_vs_dogs or digits, and the path {root.absolute()} "
                    "does not exist; use cats_vs_dogs, digits, or a path to an image folder")


def _folder_info(cfg: DataConfig) -> SourceInfo:
    try:
        scan = folder_scan.scan(_folder_root(cfg), cfg.train_fraction, cfg.val_fraction)
    except folder_scan.ScanError as exc:
        raise DataError(str(exc)) from exc
    counts = {k: sum(c[k] for c in scan.split.values()) for k in ("train", "val", "test")}
    return SourceInfo(tuple(scan.classes), counts, scan.digest, scan)


def _read_pixels(path: bytes) -> np.ndarray:
    return image_file.read(path.decode())


def _folder(cfg: DataConfig, info: SourceInfo) -> list[tuple]:
    classes = (info.scan or _folder_info(cfg).scan).classes
    rng = np.random.default_rng(cfg.seed)
    parts: dict[str, list[tuple[str, int]]] = {"train": [], "val": [], "test": []}
    for index, label in enumerate(info.labels):
        files = [str(f) for f in classes[label]]
        rng.shuffle(files)
        c = split_counts(len(files), cfg)
        parts["train"] += [(f, index) for f in files[: c["train"]]]
        parts["val"] += [(f, index) for f in files[c["train"] : c["train"] + c["val"]]]
        parts["test"] += [(f, index) for f in files[c["train"] + c["val"] :]]

    def decode(path: tf.Tensor, label: tf.Tensor):
        # The scan's decoder, not tf.io.decode_image: TensorFlow reads palette BMPs as grey indices and fails on
        # 1-bit ones, so both would see different pixels (steps/image_file.py).
        image = tf.numpy_function(_read_pixels, [path], tf.uint8, stateful=False)
        image.set_shape([None, None, 3])
        return _uint8_pixels(image, cfg.image_size), label

    def make(items: list[tuple[str, int]]) -> tuple:
        order = rng.permutation(len(items)) if items else []
        paths = [items[i][0] for i in order]
        labels = np.array([items[i][1] for i in order], dtype=np.int64)
        ds = tf.data.Dataset.from_tensor_slices((tf.constant(paths, dtype=tf.string), labels))
        return ds, decode, len(items), None  # file names: the whole split fits a shuffle buffer

    return [make(parts["train"]), make(parts["val"]), make(parts["test"])]
