"""Latency of fp32 / fp16 / dynamic / int8 with ai-edge-litert and tflite-runtime, 1 and 2 threads.

Every figure comes from the same run: speed-ups are against fp32 on the same runtime
and thread count; the runtime ratio is tflite-runtime's p50 over LiteRT's.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
TFLITE_RUNTIME_PYTHON = REPO / ".venv-tflite-runtime" / "bin" / "python"


def runtimes() -> dict[str, str]:
    found = {"ai-edge-litert": sys.executable}
    if TFLITE_RUNTIME_PYTHON.exists():
        found["tflite-runtime"] = str(TFLITE_RUNTIME_PYTHON)
    else:
        print(f"tflite-runtime skipped: run bench/setup_tflite_runtime.sh to create {TFLITE_RUNTIME_PYTHON.parent.parent}")
    return found


def measure(models: dict[str, Path], runs: int, warmup: int) -> dict[tuple[str, int], dict]:
    results = {}
    for runtime, python in runtimes().items():
        for threads in (1, 2):
            cmd = [python, "-m", "bench.latency_worker", "--runtime", runtime, "--threads", str(threads),
                   "--runs", str(runs), "--warmup", str(warmup), *(f"{v}={p}" for v, p in models.items())]
            proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, PYTHONPATH=str(REPO)),
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise RuntimeError(f"{runtime} worker failed: {proc.stderr[-1000:]}")
            results[(runtime, threads)] = json.loads(proc.stdout.strip().splitlines()[-1])
    return results


def table(results: dict[tuple[str, int], dict], variants: list[str]) -> str:
    lines = ["| runtime | threads | variant | p50 ms | speed-up vs fp32 | tflite-runtime / LiteRT |",
             "|---|---|---|---|---|---|"]
    for (runtime, threads), res in results.items():
        fp32 = res["models"].get("fp32", {}).get("p50_ms")
        litert = results.get(("ai-edge-litert", threads), {}).get("models", {})
        for variant in variants:
            m = res["models"].get(variant, {})
            if "error" in m:
                lines.append(f"| {res['runtime']} | {threads} | {variant} | cannot load: {m['error']} | | |")
                continue
            speedup = f"{fp32 / m['p50_ms']:.2f}×" if fp32 else ""
            ratio = ""
            if runtime != "ai-edge-litert" and "p50_ms" in litert.get(variant, {}):
                ratio = f"{m['p50_ms'] / litert[variant]['p50_ms']:.2f}×"
            lines.append(f"| {res['runtime']} | {threads} | {variant} | {m['p50_ms']:.2f} | {speedup} | {ratio} |")
    return "\n".join(lines)


def sizes(models: dict[str, Path]) -> str:
    fp32 = models["fp32"].stat().st_size
    return "\n".join(
        ["| variant | size MB | smaller than fp32 |", "|---|---|---|"]
        + [f"| {v} | {p.stat().st_size / 1e6:.2f} | {fp32 / p.stat().st_size:.2f}× |" for v, p in models.items()]
    )


def run(runs: int = 50, warmup: int = 5) -> str:
    from bench.models import efficientnet_variants

    models = efficientnet_variants()
    results = measure(models, runs, warmup)
    return ("### EfficientNet-B0 224×224, batch 1, p50 of "
            f"{runs} runs after {warmup} warm-up\n\n{table(results, list(models))}\n\n{sizes(models)}\n")


if __name__ == "__main__":
    print(run())
