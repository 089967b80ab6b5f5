"""Names shared by every part of edgeq: tags, metric keys, aliases, file names.

Defined here, in the lightest part, so the pipeline, the registry tools and the
device all agree on them without importing each other.
"""
from __future__ import annotations

import re

VARIANTS = ("fp32", "fp16", "dynamic", "int8", "qat")
# int8 with the layers that lose most kept float; built on request or when int8 misses its budget.
SELECTIVE = "selective"
BASELINE = "baseline"

DEFAULT_ALIAS = "production"
STAGE_PRODUCTION = "Production"

# Files inside a model version's artifact directory.
ARTIFACT_DIR = "model"
MODEL_FILE = "model.tflite"
KERAS_FILE = "model.keras"
LABELS_FILE = "labels.txt"
SAMPLE_FILE = "sample.npz"
MANIFEST_FILE = "manifest.json"
DEVICE_FILES = (MODEL_FILE, LABELS_FILE, SAMPLE_FILE, MANIFEST_FILE)

# Model version tags.
TAG_VARIANT = "variant"
TAG_QUANTIZATION = "quantization"
TAG_FORMAT = "format"
TAG_SHA256 = "sha256"
TAG_SIZE_BYTES = "size_bytes"
TAG_INPUT_SHAPE = "input_shape"
TAG_INPUT_DTYPE = "input_dtype"
TAG_LABELS = "labels"
TAG_OPS = "ops"
TAG_MIN_RUNTIME = "min_runtime_version"
TAG_PROMOTED_BY = "edgeq.promoted_by"
TAG_PROMOTED_AT = "edgeq.promoted_at"

# Run tags.
TAG_ROLE = "edgeq.role"
TAG_BASELINE_KEY = "edgeq.baseline_key"
TAG_BASELINE_RUN = "edgeq.baseline_run_id"
ROLE_PIPELINE = "pipeline"

# Registered-model tag holding the alias history used by rollback.
def alias_history_tag(alias: str) -> str:
    return f"edgeq.alias_history.{alias}"


# Metrics on a variant's run.
M_ACCURACY = "test_accuracy"
M_DROP = "accuracy_drop_points"
M_SIZE = "size_bytes"
M_SIZE_RATIO = "size_ratio"
M_P50 = "host_latency_p50_ms"
M_P90 = "host_latency_p90_ms"
M_SPEEDUP = "speedup_vs_fp32"

DEVICE_PREFIX = "device."
_DEVICE_ID_RE = re.compile(r"[^A-Za-z0-9_\-]")


def device_key(device_id: str, name: str) -> str:
    """Metric or tag key for one device's figure, e.g. ``device.pi4-kitchen.latency_p50_ms``."""
    return f"{DEVICE_PREFIX}{sanitize_device_id(device_id)}.{name}"


def sanitize_device_id(device_id: str) -> str:
    """Device ids become part of MLflow keys: keep letters, digits, '-' and '_'."""
    clean = _DEVICE_ID_RE.sub("_", device_id.strip())
    if not clean:
        raise ValueError("device id is empty")
    return clean


def parse_device_key(key: str) -> tuple[str, str] | None:
    """Inverse of `device_key`: ``(device_id, name)`` or None for other keys."""
    if not key.startswith(DEVICE_PREFIX):
        return None
    device, _, name = key[len(DEVICE_PREFIX) :].partition(".")
    return (device, name) if device and name else None
