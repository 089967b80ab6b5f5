"""One variant's child run: convert, evaluate, bundle, log metrics and artifacts."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np

from edge import contract
from edge.bundle import label_tags, sha256_file, write_bundle
from edge.tflite_info import read_info_file
from steps.baseline import Baseline
from steps.config import DataConfig, QuantConfig, TrainConfig
from steps.convert import convert
from steps.data import Split
from steps.evaluate import Evaluation, evaluate_stream
from steps.qat import convert_qat
from steps import stop
from steps.report import confusion_plot
from steps.selective import convert_selective


@dataclass(frozen=True)
class Arrays:
    """The images every variant shares: calibration images in memory, the test split streamed."""

    calibration: np.ndarray
    test: Split  # read batch by batch, never held whole
    labels: tuple[str, ...]
    sample: tuple[np.ndarray, np.ndarray]  # the first test images and their labels: the device's labelled sample


def version_tags(variant: str, path: Path, image_size: int, labels: tuple[str, ...]) -> dict[str, str]:
    """The tags a variant's model version carries (edge/contract.py), read from its ``.tflite``."""
    info = read_info_file(path)
    return {
        contract.TAG_VARIANT: variant,
        contract.TAG_QUANTIZATION: {contract.QAT: contract.INT8, contract.SELECTIVE: "mixed"}.get(variant, variant),
        contract.TAG_FORMAT: contract.FORMAT_TFLITE,
        contract.TAG_SHA256: sha256_file(path),
        contract.TAG_SIZE_BYTES: str(path.stat().st_size),
        contract.TAG_INPUT_SHAPE: "x".join(str(d) for d in (1, image_size, image_size, 3)),
        contract.TAG_INPUT_DTYPE: "uint8" if variant in (contract.INT8, contract.QAT) else "float32",
        **label_tags(labels),
        contract.TAG_OPS: info.ops_text,
        contract.TAG_MIN_RUNTIME: info.min_runtime_version or "",
    }


@dataclass(frozen=True)
class VariantResult:
    variant: str
    run_id: str
    evaluation: Evaluation
    size_bytes: int
    tags: dict[str, str]
    metrics: dict[str, float]
    bundle: Path  # the device files as written and evaluated here (what gets registered and signed)


def build_variant(variant: str, baseline: Baseline, arrays: Arrays, data: DataConfig, train: TrainConfig,
                  quant: QuantConfig, work: Path) -> Path:
    """Convert one variant; the selective variant also logs which layers stayed float and why."""
    if variant == contract.QAT:
        return convert_qat(baseline.model, data, train, quant, work)
    if variant == contract.SELECTIVE:
        selective = convert_selective(baseline.model, arrays.calibration.astype(np.float32), work)
        mlflow.log_param("float_layers", len(selective.float_layers))
        mlflow.log_artifact(str(selective.layer_stats), "quantization_debugger")
        return selective.path
    return convert(baseline.model, variant, arrays.calibration.astype(np.float32), work)


def run_variant(variant: str, baseline: Baseline, arrays: Arrays, data: DataConfig, train: TrainConfig,
                quant: QuantConfig, work: Path, fp32_p50: float | None) -> VariantResult:
    with mlflow.start_run(run_name=variant, nested=True) as run, stop.failure_reason():
        mlflow.set_tags({contract.TAG_ROLE: contract.ROLE_VARIANT, contract.TAG_VARIANT: variant, contract.TAG_BASELINE_RUN: baseline.run_id})
        mlflow.log_params({"variant": variant, "calibration_images": len(arrays.calibration),
                           "qat_epochs": quant.qat_epochs if variant == contract.QAT else 0})
        path = build_variant(variant, baseline, arrays, data, train, quant, work / variant)
        ev = evaluate_stream(path, arrays.test.numpy_batches(), len(arrays.labels), total=len(arrays.test), desc=variant)
        size = path.stat().st_size
        p50 = ev.latency.p50_ms
        metrics = {
            contract.M_ACCURACY: ev.accuracy,
            contract.M_DROP: 100.0 * (baseline.accuracy - ev.accuracy),
            contract.M_SIZE: size,
            contract.M_SIZE_RATIO: baseline.size_bytes / size,
            contract.M_P50: p50,
            contract.M_P90: ev.latency.p90_ms,
            contract.M_SPEEDUP: (fp32_p50 or p50) / p50,
        }
        mlflow.log_metrics(metrics)
        tags = version_tags(variant, path, data.image_size, arrays.labels)
        mlflow.set_tags(tags)
        bundle = work / variant / contract.ARTIFACT_DIR
        write_bundle(bundle, path, list(arrays.labels), *arrays.sample)
        mlflow.log_artifacts(str(bundle), contract.ARTIFACT_DIR)
        mlflow.log_dict({"labels": list(arrays.labels), "matrix": ev.confusion.tolist()}, "confusion_matrix.json")
        plot = confusion_plot(ev.confusion, list(arrays.labels), work / variant / "confusion_matrix.png",
                              f"{variant}: accuracy {100 * ev.accuracy:.2f} %")
        mlflow.log_artifact(str(plot))
        return VariantResult(variant, run.info.run_id, ev, size, tags, metrics, bundle)
