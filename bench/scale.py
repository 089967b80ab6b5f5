"""The pipeline at scale: peak memory against dataset size, parallel evaluation, the decoded-image cache.

``python -m bench.scale`` (a few minutes on 2 cores; not part of ``python -m bench``).
Each part can run alone: ``python -m bench.scale rss|parallel|cache``.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
RSS_SIZES = (1000, 3000, 9000)
RSS_MODES = ("before", "off", "disk", "auto")
RSS_IMAGE_SIZE = 224


def make_folder(root: Path, n: int, size: tuple[int, int] = (64, 96), classes: int = 2, seed: int = 0) -> Path:
    """``n`` JPEG files of random sizes in ``size`` (noise over a class-coloured tint), one sub-folder per class."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    for i in range(n):
        c = i % classes
        h, w = (int(v) for v in rng.integers(size[0], size[1] + 1, 2))
        pixels = np.clip(rng.normal(60 + 120 * c, 40, (h, w, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(root / f"class{c}" / f"{i:06d}.jpg", quality=90)
    return root


def _tiny_tflite(image_size: int, out_dir: Path) -> Path:
    from steps.config import TrainConfig
    from steps.convert import convert
    from steps.model import build

    return convert(build(TrainConfig(model="tiny_cnn", weights="none"), 2, image_size), "fp32", None, out_dir)


def rss() -> str:
    """Peak RSS (VmHWM) of one training epoch of input plus evaluation of the test split, per folder size."""
    rows = {}
    with tempfile.TemporaryDirectory(dir=REPO / ".edgeq") as tmp:
        work = Path(tmp)
        model = _tiny_tflite(RSS_IMAGE_SIZE, work / "model")
        for n in RSS_SIZES:
            folder = make_folder(work / f"images-{n}", n)
            for mode in RSS_MODES:
                cache = work / f"cache-{n}-{mode}"
                proc = subprocess.run([sys.executable, "-m", "bench.scale_worker", mode, str(folder), str(RSS_IMAGE_SIZE),
                                       str(model), str(cache)], cwd=REPO, capture_output=True, text=True,
                                      env=dict(os.environ, PYTHONPATH=str(REPO)))
                if proc.returncode != 0:
                    raise RuntimeError(f"scale_worker {mode} {n} failed: {proc.stderr[-2000:]}")
                rows[(n, mode)] = json.loads(proc.stdout.strip().splitlines()[-1])
    names = {"before": "before (float shuffle buffer, test split as one array)", "off": "streaming, no cache",
             "disk": "streaming, uint8 cache on disk", "auto": "streaming, uint8 cache in memory (auto: fits 2 GiB)"}
    head = "| input path | " + " | ".join(f"{n} images" for n in RSS_SIZES) + f" | {RSS_SIZES[-1]} vs {RSS_SIZES[0]} |"
    lines = [f"### Peak RSS (MB) vs number of images ({RSS_IMAGE_SIZE} px; one epoch of training input, batch 16, "
             "plus evaluation of the test split with a tiny CNN)", "", head, "|---|" + "---|" * (len(RSS_SIZES) + 1)]
    for mode in RSS_MODES:
        peaks = [rows[(n, mode)]["peak_rss_mb"] for n in RSS_SIZES]
        lines.append(f"| {names[mode]} | " + " | ".join(f"{p:.0f}" for p in peaks) + f" | {peaks[-1] / peaks[0]:.2f}× |")
    lines.append(f"| wall s after start-up ({'/'.join(RSS_MODES)}) | " + " | ".join(
        "/".join(f"{rows[(n, m)]['seconds']:.0f}" for m in RSS_MODES) for n in RSS_SIZES) + " | |")
    return "\n".join(lines) + "\n"


def _efficientnet(variant: str, image_size: int = 224) -> Path:
    """The article's classifier (random weights: speed only) as ``variant``, cached like ``bench.models``."""
    from bench.models import CACHE

    path = CACHE / f"efficientnet_b0_{image_size}" / f"{variant}.tflite"
    if not path.exists():
        from steps.config import TrainConfig
        from steps.convert import convert
        from steps.model import build

        model = build(TrainConfig(model="efficientnet_b0", weights="none"), 2, image_size)
        rep = np.random.default_rng(0).integers(0, 256, size=(32, image_size, image_size, 3)).astype(np.float32)
        print(f"converting EfficientNet-B0 {variant} (cached in {path.parent})…", flush=True)
        convert(model, variant, rep, path.parent)
    return path


def parallel(n: int = 400, rounds: int = 3) -> str:
    """Evaluation of ``n`` images: one process (the interpreter's default threads) against one process per core.

    Best of ``rounds`` interleaved runs each (other work on a shared machine only slows runs down).
    """
    from steps.evaluate import WorkerPool, default_workers, evaluate_stream

    images = np.random.default_rng(1).integers(0, 256, size=(n, 224, 224, 3), dtype=np.uint8)
    labels = np.zeros(n, np.int64)
    cores = default_workers()

    def batches():
        return ((images[i : i + 16], labels[i : i + 16]) for i in range(0, n, 16))

    def pooled(path: Path, workers: int) -> np.ndarray:
        pool = WorkerPool(path, workers)
        try:
            return np.concatenate(list(pool.map(x for x, _ in batches())))
        finally:
            pool.close()

    rows = [f"### Parallel evaluation ({n} images, 224 px, {cores} cores; wall time incl. worker start-up, best of {rounds})", "",
            f"| model | one process, default threads img/s | 1 worker × 1 thread img/s | {cores} workers × 1 thread img/s "
            f"| {cores} workers vs one process | same predictions |", "|---|---|---|---|---|---|"]
    for variant in ("fp32", "int8"):
        path = _efficientnet(variant)
        best = {"one": np.inf, "w1": np.inf, "wn": np.inf}
        predictions = {}
        for _ in range(rounds):
            for name, run in (("one", lambda: evaluate_stream(path, batches(), 2, total=n, workers=1, latency_images=10,
                                                               desc=f"{variant}").predictions),
                              ("w1", lambda: pooled(path, 1)), ("wn", lambda: pooled(path, cores))):
                start = time.perf_counter()
                predictions[name] = run()
                best[name] = min(best[name], time.perf_counter() - start)
        same = np.array_equal(predictions["one"], predictions["wn"]) and np.array_equal(predictions["one"], predictions["w1"])
        rows.append(f"| EfficientNet-B0 {variant} | {n / best['one']:.0f} | {n / best['w1']:.0f} | {n / best['wn']:.0f} | "
                    f"{best['one'] / best['wn']:.2f}× | {'yes' if same else 'NO'} |")
    return "\n".join(rows) + "\n"


def cache(n: int = 2000, image_size: int = 64, epochs: int = 3, rounds: int = 2) -> str:
    """Epoch time of the tiny CNN on a folder of photo-sized JPEGs, decoding every epoch vs once into the cache.

    The modes run interleaved, ``rounds`` times; each figure is the best of its rounds.
    """
    import keras

    from steps import data
    from steps.config import DataConfig, TrainConfig
    from steps.input_cache import CacheConfig
    from steps.model import build
    from steps.train import train

    class EpochTimes(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.times: list[float] = []

        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.times.append(time.perf_counter() - self.start)

    modes = ("off", "memory", "disk")
    best = {m: (np.inf, np.inf, np.inf) for m in modes}  # (build s, epoch 1 s, later epochs mean s)
    with tempfile.TemporaryDirectory(dir=REPO / ".edgeq") as tmp:
        folder = make_folder(Path(tmp) / "photos", n, size=(300, 500))
        for f in folder.rglob("*.jpg"):  # page cache warm for every run
            f.read_bytes()
        cfg = DataConfig(dataset=str(folder), image_size=image_size, min_test_images=1)
        tcfg = TrainConfig(model="tiny_cnn", weights="none", epochs=epochs, batch_size=32, learning_rate=1e-3)
        data.inspect(cfg)  # the folder fingerprint, once
        for r in range(rounds):
            for mode in modes:
                splits = data.load(cfg, cache=CacheConfig(mode=mode, directory=Path(tmp) / f"cache-{mode}-{r}"))
                start = time.perf_counter()
                splits.train.ensure_cached()
                splits.val.ensure_cached()
                build_s = time.perf_counter() - start
                keras.utils.set_random_seed(0)
                timer = EpochTimes()
                train(build(tcfg, 2, image_size), splits, cfg, tcfg, callbacks=[timer])
                got = (build_s, timer.times[0], float(np.mean(timer.times[1:])))
                best[mode] = tuple(min(a, b) for a, b in zip(best[mode], got))
    rows = [f"### Input cache: tiny CNN, {n} JPEGs of 300–500 px resized to {image_size} px, batch 32, {epochs} epochs "
            f"(best of {rounds})", "",
            "| decoded images | cache build s | epoch 1 s | later epochs s (mean) | later epochs vs no cache |", "|---|---|---|---|---|"]
    names = {"off": "decoded every epoch (no cache)", "memory": "uint8 cache in memory", "disk": "uint8 cache on disk"}
    for mode in modes:
        build_s, first, later = best[mode]
        rows.append(f"| {names[mode]} | {build_s:.1f} | {first:.1f} | {later:.2f} | {best['off'][2] / later:.2f}× faster |")
    return "\n".join(rows) + "\n"


def main() -> None:
    (REPO / ".edgeq").mkdir(exist_ok=True)
    parts = {"rss": rss, "parallel": parallel, "cache": cache}
    chosen = sys.argv[1:] or list(parts)
    start = time.perf_counter()
    for name in chosen:
        before = os.getloadavg()[0]
        text = parts[name]()
        # Other work on a shared machine shows here: a load above the core count means no core was free.
        print(f"{text}\n_load average {before:.1f} before, {os.getloadavg()[0]:.1f} after, on {os.cpu_count()} cores_\n")
    print(f"_{' + '.join(chosen)}: {time.perf_counter() - start:.0f} s_")


if __name__ == "__main__":
    main()
