"""Decoded, resized uint8 images kept once per split: in memory when they fit, in a file otherwise.

Decoding and resizing then run once per run instead of once per epoch (and once per
evaluated variant). A uint8 image is a quarter of the float32 one the model sees; the
file cache is read image by image, so it costs page cache, not process memory.
"""
from __future__ import annotations

import os
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path

import numpy as np

# auto keeps at most this much in process memory (all splits together); the rest goes to files.
DEFAULT_MEMORY_CAP = 2 << 30


@dataclass(frozen=True)
class CacheConfig:
    mode: str = "auto"  # auto: memory while the budget lasts, then disk; off: decode every epoch
    directory: Path | None = None  # for cache files (default: a temporary directory)
    memory_bytes: int | None = None  # budget of auto (default: a quarter of available memory, at most 2 GiB)


def available_memory() -> int:
    try:
        with open("/proc/meminfo", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 4 << 30


class Budget:
    """Memory still available to in-memory caches of one load."""

    def __init__(self, config: CacheConfig):
        self.config = config
        self.left = config.memory_bytes if config.memory_bytes is not None else min(available_memory() // 4, DEFAULT_MEMORY_CAP)

    def place(self, nbytes: int) -> str | None:
        """'memory', 'disk' or None (no cache) for a split of ``nbytes``."""
        mode = self.config.mode
        if mode == "off":
            return None
        if mode == "memory" or (mode == "auto" and nbytes <= self.left):
            self.left -= nbytes
            return "memory"
        return "disk"


class MemoryStore:
    def __init__(self, n: int, shape: tuple[int, ...]):
        self.array = np.empty((n, *shape), np.uint8)
        self.kind = "memory"

    def write(self, start: int, images: np.ndarray) -> None:
        self.array[start : start + len(images)] = images

    def gather(self, indices: np.ndarray) -> np.ndarray:
        return self.array[indices]

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.array[start:stop]


class DiskStore:
    """Fixed-size uint8 records in one file, read with positional reads (thread-safe, no mapping)."""

    def __init__(self, n: int, shape: tuple[int, ...], directory: Path | None, name: str):
        self._tmp = None
        if directory is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="edgeq-cache-")
            directory = Path(self._tmp.name)
        directory.mkdir(parents=True, exist_ok=True)
        self.path = Path(directory) / f"{name}-{n}x{'x'.join(map(str, shape))}.u8"
        self.shape = shape
        self.record = int(np.prod(shape))
        self.kind = "disk"
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        weakref.finalize(self, os.close, self._fd)

    def write(self, start: int, images: np.ndarray) -> None:
        view = memoryview(np.ascontiguousarray(images, np.uint8)).cast("B")
        offset = start * self.record
        while view:
            done = os.pwrite(self._fd, view, offset)
            view, offset = view[done:], offset + done

    def _read_into(self, out: np.ndarray, offset: int) -> None:
        view = memoryview(out).cast("B")
        while view:
            done = os.preadv(self._fd, [view], offset)
            if done == 0:
                raise OSError(f"cache file {self.path} is truncated")
            view, offset = view[done:], offset + done

    def gather(self, indices: np.ndarray) -> np.ndarray:
        out = np.empty((len(indices), *self.shape), np.uint8)
        for j, i in enumerate(indices):
            self._read_into(out[j], int(i) * self.record)
        return out

    def read(self, start: int, stop: int) -> np.ndarray:
        out = np.empty((stop - start, *self.shape), np.uint8)
        self._read_into(out, start * self.record)
        return out


def new_store(place: str, n: int, shape: tuple[int, ...], config: CacheConfig, name: str) -> MemoryStore | DiskStore:
    if place == "memory":
        return MemoryStore(n, shape)
    return DiskStore(n, shape, config.directory, name)
