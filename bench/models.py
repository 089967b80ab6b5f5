"""EfficientNet-B0 (the article's model, random weights: latency does not depend on them) in every variant.

Built once and cached under ``.edgeq/bench/``; ImageNet weights are not needed to time it.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

VARIANTS = ("fp32", "fp16", "dynamic", "int8")
CACHE = Path(__file__).resolve().parent.parent / ".edgeq" / "bench" / "models"


def efficientnet_variants(image_size: int = 224, calibration: int = 32, cache: Path = CACHE) -> dict[str, Path]:
    """variant -> .tflite of the article's classifier (EfficientNet-B0 + head, 2 classes, batch 1)."""
    out = {v: cache / f"efficientnet_b0_{image_size}" / f"{v}.tflite" for v in VARIANTS}
    if all(p.exists() for p in out.values()):
        return out
    from steps.config import TrainConfig
    from steps.convert import convert
    from steps.model import build

    model = build(TrainConfig(model="efficientnet_b0", weights="none"), 2, image_size)
    rng = np.random.default_rng(0)
    rep = rng.integers(0, 256, size=(calibration, image_size, image_size, 3)).astype(np.float32)
    for variant, path in out.items():
        if not path.exists():
            print(f"converting EfficientNet-B0 {variant} (cached in {path.parent})…", flush=True)
            convert(model, variant, rep, path.parent)
    return out
