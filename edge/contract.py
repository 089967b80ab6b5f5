"""Names shared by every part of edgeq: tags, metric keys, aliases, file names.

Defined here, in the lightest part, so the pipeline, the registry tools and the
device all agree on them without importing each other.
"""
from __future__ import annotations

import enum
import re

FP32, FP16, DYNAMIC, INT8, QAT = "fp32", "fp16", "dynamic", "int8", "qat"
VARIANTS = (FP32, FP16, DYNAMIC, INT8, QAT)
# int8 with the layers that lose most kept float; built on request or when int8 misses its budget.
SELECTIVE = "selective"
BASELINE = "baseline"

DEFAULT_ALIAS = "production"
CANARY_ALIAS = "canary"
STAGE_PRODUCTION = "Production"

# Files inside a model version's artifact directory.
ARTIFACT_DIR = "model"
MODEL_FILE = "model.tflite"
KERAS_FILE = "model.keras"
LABELS_FILE = "labels.txt"
SAMPLE_FILE = "sample.npz"
MANIFEST_FILE = "manifest.json"
DEVICE_FILES = (MODEL_FILE, LABELS_FILE, SAMPLE_FILE, MANIFEST_FILE)
# Ed25519 signature over manifest.json (edge/signing.py), next to it; fetched when a device trusts a key.
SIGNATURE_FILE = "manifest.json.sig"
# The pipeline's private signing key (a path); the device's --trust-key is EDGEQ_TRUST_KEY.
ENV_SIGNING_KEY = "EDGEQ_SIGNING_KEY"

# Model version tags.
TAG_VARIANT = "variant"
TAG_QUANTIZATION = "quantization"
TAG_FORMAT = "format"
FORMAT_TFLITE, FORMAT_KERAS = "tflite", "keras"  # its values
TAG_SHA256 = "sha256"
TAG_SIZE_BYTES = "size_bytes"
TAG_INPUT_SHAPE = "input_shape"
TAG_INPUT_DTYPE = "input_dtype"
TAG_LABELS = "labels"
TAG_OPS = "ops"
TAG_MIN_RUNTIME = "min_runtime_version"
TAG_SIGNING_KEY_FINGERPRINT = "signing_key_fingerprint"  # "sha256:<hex>" of the key that signed the manifest
TAG_PROMOTED_BY = "edgeq.promoted_by"
TAG_PROMOTED_AT = "edgeq.promoted_at"

# Run tags.
TAG_ROLE = "edgeq.role"
TAG_BASELINE_KEY = "edgeq.baseline_key"
TAG_BASELINE_RUN = "edgeq.baseline_run_id"
TAG_BASELINE_REUSED = "edgeq.baseline_reused"  # on the pipeline run: "true" / "false"
ROLE_PIPELINE = "pipeline"
ROLE_BASELINE = "baseline"
ROLE_VARIANT = "variant"

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

# The promotion gate's default budget (accuracy points lost against the baseline); the pipeline's summary uses it too.
DEFAULT_MAX_ACCURACY_DROP = 1.0
# Variants that run integer kernels end to end (selective keeps some layers float).
INT8_FAMILY = (INT8, QAT, SELECTIVE)

# The pipeline (parent) run's summary: metrics, and tags naming the version behind each.
M_BEST_INT8_DROP = "summary.best_int8_family_drop_points"
M_SMALLEST_SIZE = "summary.smallest_within_budget_size_bytes"
M_SMALLEST_RATIO = "summary.smallest_within_budget_size_ratio"
M_FASTEST_P50 = "summary.fastest_within_budget_p50_ms"
M_FASTEST_SPEEDUP = "summary.fastest_within_budget_speedup"
TAG_BEST_INT8 = "edgeq.summary.best_int8_family"
TAG_SMALLEST = "edgeq.summary.smallest_within_budget"
TAG_FASTEST = "edgeq.summary.fastest_within_budget"
TAG_BUDGET = "edgeq.summary.accuracy_budget_points"

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


class ExitCode(enum.IntEnum):
    """Exit codes shared by ``edgeq`` and ``edgeq-pull`` (documented in the README)."""

    OK = 0
    FAILED = 1  # unexpected: a bug; reported with its traceback
    BAD_CONFIG = 2  # bad input or configuration: unknown model/alias/version/device, bad option, missing runtime
    UNREACHABLE = 3  # server unreachable or failing (5xx); device results wait in the outbox
    REJECTED = 4  # a check refused: device health gate, checksum, signature, promotion gate
    BUSY = 5  # another puller holds the lock


# What a device reports, as ``device.<id>.<name>`` on the version's own run.
# Metrics:
D_P50 = "latency_p50_ms"
D_P90 = "latency_p90_ms"
D_P99 = "latency_p99_ms"
D_MEAN = "latency_mean_ms"
D_STD = "latency_std_ms"
D_PEAK_RSS = "peak_rss_mb"
D_SAMPLE_ACCURACY = "sample_accuracy"
D_SAMPLE_SIZE = "sample_size"
D_ACCURACY_BOUND = "sample_accuracy_lower_bound"  # what the sample size allows below the registered accuracy
D_CPU_FREQ_MHZ = "cpu_freq_mhz"
D_TEMP_BEFORE_C = "soc_temp_before_c"
D_TEMP_AFTER_C = "soc_temp_after_c"
# Tags:
D_STATUS = "status"  # one of DEVICE_STATUSES
D_REASON = "reason"  # why a device rejected the version (empty when healthy)
D_HOSTNAME = "hostname"
D_CPU = "cpu"
D_RUNTIME = "runtime"
D_RUNTIME_VERSION = "runtime_version"
D_DELEGATE = "delegate"
D_THREADS = "threads"
D_MODEL_VERSION = "model_version"
D_ALIAS = "alias"
D_GOVERNOR = "cpu_governor"
D_THROTTLED = "throttled"  # THROTTLED_YES / "no" / "unknown"
THROTTLED_YES, THROTTLED_NO, THROTTLED_UNKNOWN = "yes", "no", "unknown"
D_THROTTLE_FLAGS = "throttle_flags"  # vcgencmd get_throttled value on a Pi
D_REPORTED_AT = "reported_at"  # ISO 8601, UTC

STATUS_HEALTHY = "healthy"
STATUS_REJECTED = "rejected"
DEVICE_STATUSES = (STATUS_HEALTHY, STATUS_REJECTED)

PIPELINE_EXPERIMENT = "edgeq"  # where the pipeline runs when MLflow is told no experiment

# The fleet: one run per (model, device) in this experiment holds the device's heartbeats and history.
FLEET_EXPERIMENT = "edgeq-fleet"
ROLE_DEVICE = "device"
TAG_DEVICE_ID = "edgeq.device_id"
TAG_MODEL = "edgeq.model"
TAG_ALIAS = "edgeq.alias"
TAG_HOSTNAME = "edgeq.hostname"
TAG_RUNNING_VERSION = "edgeq.running_version"
TAG_LAST_STATUS = "edgeq.last_status"
TAG_LAST_REASON = "edgeq.last_reason"
TAG_INTERVAL_S = "edgeq.interval_s"  # how often the device runs, so the fleet view can call it stale
DEFAULT_INTERVAL_MINUTES = 15  # edgeq-pull's --every, and what the fleet view assumes of a device that does not say


def last_status(code: ExitCode) -> str:
    """TAG_LAST_STATUS of a run that ended with ``code``."""
    return {ExitCode.OK: STATUS_HEALTHY, ExitCode.REJECTED: STATUS_REJECTED}.get(code, f"exit {int(code)}")
M_HEARTBEAT = "heartbeat"  # 1 per run; its timestamp is "last seen"
M_RUNNING_VERSION = "running_version"

VERSION_RE = re.compile(r"[0-9]{1,9}")


def check_version_number(version: str) -> str:
    """Model versions are whole numbers; anything else from a server or a user is refused."""
    text = str(version).strip()
    if not VERSION_RE.fullmatch(text):
        raise ValueError(f"model version must be a whole number, got {version!r}")
    return text


# Registered-model tag: every alias change (promote / rollback) as a JSON list, newest last, for `edgeq history`.
# People read the same log as a table in the registered model's description, under this heading.
TAG_HISTORY = "edgeq.history"
HISTORY_HEADING = "### Alias history (kept by edgeq)"
