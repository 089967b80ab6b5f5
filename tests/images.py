"""Generate an image-folder dataset: one sub-folder per class, mixed sizes and formats."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("stripes", "checks", "blobs")


def _pattern(kind: str, size: int, rng: np.random.Generator) -> np.ndarray:
    y, x = np.mgrid[0:size, 0:size] / size
    phase = rng.uniform(0, 2 * np.pi)
    freq = rng.uniform(3, 6)
    if kind == "stripes":
        base = np.sin(2 * np.pi * freq * x + phase)
    elif kind == "checks":
        base = np.sign(np.sin(2 * np.pi * freq * x + phase) * np.sin(2 * np.pi * freq * y + phase))
    else:
        cx, cy = rng.uniform(0.3, 0.7, size=2)
        base = np.where((x - cx) ** 2 + (y - cy) ** 2 < rng.uniform(0.03, 0.08), 1.0, -1.0)
    tint = rng.uniform(0.4, 1.0, size=3)
    img = (base[..., None] * 0.5 + 0.5) * tint * 255 + rng.normal(0, 12, (size, size, 3))
    return np.clip(img, 0, 255).astype(np.uint8)


def make_image_folder(root: Path, per_class: int = 40, classes: tuple[str, ...] = CLASSES, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for kind in classes:
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            size = int(rng.integers(24, 64))  # any image size: the pipeline resizes
            suffix = ".png" if i % 2 else ".jpg"
            Image.fromarray(_pattern(kind if kind in CLASSES else CLASSES[sum(map(ord, kind)) % 3], size, rng)).save(folder / f"{i:03d}{suffix}")
    return root
