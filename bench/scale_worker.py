"""One measured run of the input path for ``bench.scale``, in a process of its own; prints JSON with its VmHWM.

Usage: ``python -m bench.scale_worker MODE FOLDER IMAGE_SIZE MODEL.tflite CACHE_DIR``. MODE is
``before`` (the pipeline before streaming: decoded float images in a 2,048-image shuffle
buffer, the test split materialized as one array) or a cache mode of
``steps.input_cache`` (``off``, ``disk``, ``auto``) for today's streaming path.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(mode: str, folder: str, image_size: str, model_path: str, cache_dir: str) -> None:
    from edge.benchmark import peak_rss_mb
    from steps import data
    from steps.config import DataConfig
    from steps.evaluate import evaluate_stream, evaluate_tflite
    from steps.input_cache import CacheConfig

    cfg = DataConfig(dataset=folder, image_size=int(image_size), min_test_images=1)
    start = time.perf_counter()
    splits = data.load(cfg, cache=CacheConfig(mode="off" if mode == "before" else mode, directory=Path(cache_dir)))
    if mode == "before":
        # What the pipeline did: shuffle decoded float32 images through a 2,048 buffer each epoch ...
        train = data.batched(splits.train.dataset(), 16, shuffle_seed=cfg.seed)
        # ... and hold the whole test split as one array for the evaluator.
        images, labels = data.to_arrays(splits.test.dataset())
    else:
        train = splits.train.batches(16, shuffle_seed=cfg.seed)
    seen = sum(int(x.shape[0]) for x, _ in train)  # one training epoch of input
    seen += sum(int(x.shape[0]) for x, _ in splits.val.batches(16))
    if mode == "before":
        ev = evaluate_tflite(Path(model_path), images, labels, len(splits.info.labels), workers=1, desc="before")
    else:
        ev = evaluate_stream(Path(model_path), splits.test.numpy_batches(), len(splits.info.labels), total=len(splits.test),
                             workers=1, desc=mode)
    print(json.dumps({"mode": mode, "images": sum(splits.info.counts.values()), "read": seen + len(ev.predictions),
                      "seconds": time.perf_counter() - start, "peak_rss_mb": peak_rss_mb()}))


if __name__ == "__main__":
    if len(sys.argv) != 6:
        raise SystemExit(__doc__)
    main(*sys.argv[1:])
