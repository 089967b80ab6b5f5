"""Names shared by every part of edgeq: tags, metric keys, aliases, file names.

Defined here, in the lightest part, so the pipeline, the registry tools and the
device all agree on them without importing each other.
"""
from __future__ import annotations

import enum
import hashlib
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
# The class names joined by ",", only while they fit LABELS_TAG_MAX_CHARS (older MLflow servers take at most
# 5,000 characters in a tag value); labels.txt in the bundle always holds the list, which the sha256 and count
# tags let a device check.
TAG_LABELS = "labels"
LABELS_TAG_MAX_CHARS = 4000
TAG_LABELS_SHA256 = "labels_sha256"  # sha256 of labels.txt as the bundle holds it
TAG_LABELS_COUNT = "labels_count"
TAG_OPS = "ops"
TAG_MIN_RUNTIME = "min_runtime_version"
TAG_SIGNING_KEY_FINGERPRINT = "signing_key_fingerprint"  # "sha256:<hex>" of the key that signed the manifest
TAG_PROMOTED_BY = "edgeq.promoted_by"
TAG_PROMOTED_AT = "edgeq.promoted_at"

# Run tags.
TAG_ROLE = "edgeq.role"
TAG_BASELINE_KEY = "edgeq.baseline_key"
TAG_BASELINE_RUN = "edgeq.baseline_run_id"  # on the pipeline and variant runs, and on each TFLite version
TAG_BASELINE_REUSED = "edgeq.baseline_reused"  # on the pipeline run: "true" / "false"
# Why a run ended FAILED: the one-line error, or the signal that stopped it ("stopped by SIGTERM").
TAG_FAILURE_REASON = "edgeq.failure_reason"
# On a variant run whose bundle a version of the same baseline and variant already holds: that version's number.
TAG_SAME_AS_VERSION = "edgeq.same_as_version"
# On the pipeline run: what the scan of an image folder used, skipped and split (a Markdown table).
DATA_SCAN_FILE = "data_scan.md"
ROLE_PIPELINE = "pipeline"
ROLE_BASELINE = "baseline"
ROLE_VARIANT = "variant"

# Registered-model tag in which older edgeq versions kept what rollback walked back (read once, then deleted).
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
    """Exit codes shared by ``edgeq`` and ``edgeq-pull`` (meanings in EXIT_MEANINGS, documented in docs/reference/)."""

    OK = 0
    FAILED = 1  # unexpected: a bug; reported with its traceback
    BAD_CONFIG = 2  # bad input or configuration: unknown model/alias/version/device, bad option, missing runtime
    UNREACHABLE = 3  # server unreachable or failing (5xx); device results wait in the outbox
    REJECTED = 4  # a check refused: device health gate, checksum, signature, promotion gate
    BUSY = 5  # another puller holds the lock
    STORAGE = 6  # the device cannot write its state dir: disk full, read-only or not permitted
    HELD = 7  # edgeq guard: the evidence cannot decide yet (too few devices, mixed, a breach not yet persistent)
    RACED = 8  # another move of the alias raced this one: nothing overwritten


# What each exit code means, for people: scripts/gen_cli_docs.py writes it into docs/reference/.
EXIT_MEANINGS: dict[ExitCode, str] = {
    ExitCode.OK: "success, or nothing to do",
    ExitCode.FAILED: "a bug (the only exit with a traceback)",
    ExitCode.BAD_CONFIG: (
        "bad input or configuration: unknown model, alias, version or device; bad or clashing options; "
        "credentials in the tracking URI, an unsafe credentials file, or credentials refused (401/403); "
        "a report the server refused (kept in outbox/dead-letter/); no usable TFLite runtime"
    ),
    ExitCode.UNREACHABLE: (
        "server unreachable, failing (5xx), cut off mid-answer, answering what no MLflow server sends, "
        "or past --deadline; device reports wait in the outbox"
    ),
    ExitCode.REJECTED: (
        "refused by a check, nothing changed: the promotion gate or canary evidence (edgeq); checksum, size cap, "
        "signature, runtime too old, test inference, health gate, --on-change hook, or a version rejected "
        "before (edgeq-pull, the current model keeps serving)"
    ),
    ExitCode.BUSY: "another edgeq-pull run holds the lock (--lock-wait)",
    ExitCode.STORAGE: "the device cannot write its state directory: disk full, read-only or not permitted",
    ExitCode.HELD: (
        "held, nothing moved: the evidence cannot decide yet — too few devices in the window, mixed below the margin, "
        "a breach not yet persistent, a cooldown after a rollback, a capped read (edgeq guard); the message says what "
        "is missing"
    ),
    ExitCode.RACED: "someone else moved the alias meanwhile: nothing was overwritten; the history records what happened",
}


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
TAG_HEARTBEAT_S = "edgeq.heartbeat_s"  # how often a quiet device moves its last seen (runs/update): staleness uses it
DEFAULT_HEARTBEAT_MINUTES = 60  # edgeq-pull's --heartbeat-every: a quiet run in between sends only its resolve
# Registered-model tags of `edgeq aggregate`: its watermark (JSON: when the last pass started, in ms, the aliases it
# saw and its timer's interval; the next pass reads only device runs that ended later) and when that pass ran (UTC).
TAG_AGGREGATE_WATERMARK = "edgeq.aggregate.watermark"
TAG_AGGREGATE_PASS_AT = "edgeq.aggregate.pass_at"
DEFAULT_AGGREGATE_EVERY_MINUTES = 10  # the timer docs/fleet.md gives `edgeq aggregate`: older aggregates read as stale


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


# Registered-model tag: every alias change (promote / rollback / outside edgeq), one readable line each, newest first
# (`TIME | ALIAS | vFROM → vTO | KIND | BY | WHY`), for `edgeq history`; older tags held a JSON list, still read.
# People read the same log as a table in the registered model's description, under this heading.
TAG_HISTORY = "edgeq.history"
HISTORY_HEADING = "### Alias history (kept by edgeq)"

# --- the guard, the alias history nothing bypasses, the gate's stated power ----------------------------------
# `edgeq guard`: the history's "by" for its rollbacks, its defaults, and what it writes on the refused version
# (as run tags on the version's run and as tags on the model version).
GUARD_BY = "guard"
DEFAULT_GUARD_MIN_DEVICES = 3
DEFAULT_GUARD_MAX_REJECTED_FRACTION = 0.25
TAG_GUARD_VERDICT = "edgeq.guard.verdict"  # GUARD_ROLLED_BACK
GUARD_ROLLED_BACK = "rolled back"
GUARD_OVERRIDDEN = "overridden"  # a person promoted the version again (edgeq promote --override-guard)
TAG_GUARD_REASON = "edgeq.guard.reason"  # the figures that decided it
TAG_GUARD_AT = "edgeq.guard.at"  # ISO 8601, UTC
TAG_GUARD_RESTORED = "edgeq.guard.restored_version"  # the version the alias went back to
# The history's kind (and "by") of an alias move that edgeq did not make: MLflow UI, a plain client.
HISTORY_OUTSIDE = "outside edgeq"
# The gate's power, logged by the pipeline on each TFLite version: the smallest loss of accuracy (points below
# the registered accuracy) that a device's gate refuses with probability GATE_POWER on the bundled sample.
# A version tag (what a device reads with the version) and the same key as a metric on the version's run.
TAG_GATE_DETECTABLE_DROP = "gate_detectable_drop_points"
M_GATE_DETECTABLE_DROP = TAG_GATE_DETECTABLE_DROP
TAG_GATE_POWER = "gate_power"  # e.g. "0.9"
TAG_GATE_SAMPLE_SIZE = "gate_sample_size"
GATE_POWER = 0.9


# --- one CLI vocabulary ---
# `--max-p99-ms all=MS` in edgeq promote --from and edgeq-pull: the limit for every device.
ALL_DEVICES = "all"


# Device evidence layout ----------------------------------------------------------------------------------------------
# Per-device detail lives in the device's own run (one per model and device in FLEET_EXPERIMENT), keyed by the
# version it is about: metrics ``v<N>.latency_p50_ms`` …, tags ``v<N>.status`` …; the version's run holds only
# the fleet aggregates below. The legacy ``device.<id>.<name>`` keys on a version's run are still read.
def version_key(version: str, name: str) -> str:
    """Key of one figure a device reports about ``version`` on its own run, e.g. ``v7.latency_p99_ms``."""
    return f"v{check_version_number(version)}.{name}"


def parse_version_key(key: str) -> tuple[str, str] | None:
    """Inverse of `version_key`: ``(version, name)`` or None for other keys."""
    head, sep, name = key.partition(".")
    if not sep or not name or not head.startswith("v") or not VERSION_RE.fullmatch(head[1:]):
        return None
    return head[1:], name


# First metric of every report (value and step: the version; its timestamp identifies the report for the outbox).
M_REPORTED_VERSION = "reported_version"
TAG_DEVICE_CLASS = "edgeq.device_class"  # the CPU model: what fleet aggregates group latency by
TAG_RUNTIME = "edgeq.runtime"  # "<package> <version>"
# The device's clock minus the server's (Date header), whole seconds; stamps the device sends are corrected by it.
TAG_CLOCK_SKEW_S = "edgeq.clock_skew_s"
CLOCK_TOLERANCE_S = 2.0  # the Date header's resolution plus a round trip: smaller skews are not corrected
CLOCK_SKEW_LIMIT_S = 120.0  # `edgeq fleet` flags a device whose clock is further off than this
ENV_CLOCK_OFFSET_S = "EDGEQ_CLOCK_OFFSET_S"  # shifts the device's own clock (tests, a Pi's missing RTC in a drill)

# Fleet aggregates of one version, on the version's run (linked to its logged model) — `edgeq aggregate`.
AGG_PREFIX = "fleet."
A_REPORTING = "fleet.devices_reporting"
A_HEALTHY = "fleet.devices_healthy"
A_REJECTED = "fleet.devices_rejected"
A_BEHIND = "fleet.devices_behind"  # follow an alias at this version, run an older one, did not refuse it
A_THROTTLED = "fleet.devices_throttled"
A_UNVERIFIED = "fleet.reports_not_counted"  # unverified, or unsigned where unsigned evidence does not count
A_P50_MEDIAN = "fleet.p50_median_ms"
A_P50_WORST = "fleet.p50_worst_ms"
A_P99_WORST = "fleet.p99_worst_ms"
A_ACC_MEDIAN = "fleet.sample_accuracy_median"
A_ACC_WORST = "fleet.sample_accuracy_worst"
A_CLASS_PREFIX = "fleet.class."  # fleet.class.<device class>.{devices,p50_median_ms,p50_worst_ms}


def class_key(device_class: str, name: str) -> str:
    """``fleet.class.Cortex-A72.p50_median_ms``: an aggregate of one device class."""
    clean = _DEVICE_ID_RE.sub("_", device_class.strip())[:60] or "unknown"
    return f"{A_CLASS_PREFIX}{clean}.{name}"


TAG_FLEET_SUMMARY = "edgeq.fleet"  # on the model version: the aggregates in one line, for the version page
TAG_FLEET_AGGREGATED_AT = "edgeq.fleet.aggregated_at"  # ISO 8601, UTC

# --- the MLflow UI as a user sees it ---------------------------------------------------------------------------
# MLflow's UI (3.x) picks an experiment's layout from this experiment tag; without it an experiment opens in the
# GenAI layout (traces, evaluations). Every experiment edgeq creates gets the training layout's value, and one
# edgeq reuses gets it when it has no kind yet (a kind someone chose in the UI is left alone).
TAG_EXPERIMENT_KIND = "mlflow.experimentKind"
EXPERIMENT_KIND_TRAINING = "custom_model_development"


# Evidence with an author (edge/evidence.py, edge/identity.py, registry_tools/evidence.py) ----------------------
# A device's fleet run carries write-once params nobody else can change or delete: who it is (the same keys as its
# identity tags), one ``edgeq.ev.<digest>`` per signed report or status, and ``v<N>.evidence`` = "1" once it has
# reported on version N (what readers search by: a param cannot be deleted to hide a report).
P_DEVICE_ID = TAG_DEVICE_ID
P_MODEL = TAG_MODEL
D_EVIDENCE = "evidence"  # version_key(N, D_EVIDENCE): the search marker
EVIDENCE_MARK = "1"
# The operator's records, where device accounts can read but not write: the registered model ENROLMENT_MODEL holds
# the enrolments in ENROLMENT_BUCKETS tags (enrolment_bucket_tag: a stable hash of the device id picks one; each holds
# a JSON object device → record), so a reader fetches a 10,000-device register as ~1,000 rows, not 10,000; every model
# the fleet pulls records the fleet experiment's id, and TAG_DEVICES_ENROLLED once a device was enrolled for it.
ENROLMENT_MODEL = "edgeq-devices"
ENROLMENT_BUCKETS = 1024  # a bucket tag holds up to 100,000 characters: ≈ 580 devices, so the register ≈ 590,000
ENROLMENT_BUCKET_PREFIX = "edgeq.devices."
TAG_FLEET_EXPERIMENT_ID = "edgeq.fleet_experiment_id"  # on each registered model: readers and devices use the id
TAG_DEVICES_ENROLLED = "edgeq.devices_enrolled"  # on a model, "true": signed evidence is what counts for it
TAG_ACCEPT_UNSIGNED = "edgeq.accept_unsigned"  # on a model, "true": the operator counts unsigned evidence for it


def enrolment_bucket_tag(device_id: str) -> str:
    """The tag on ENROLMENT_MODEL that holds ``device_id``'s enrolment (with those of the devices sharing its bucket)."""
    digest = hashlib.sha256(sanitize_device_id(device_id).encode("utf-8")).hexdigest()
    return f"{ENROLMENT_BUCKET_PREFIX}{int(digest[:8], 16) % ENROLMENT_BUCKETS:03x}"


def alias_since_tag(alias: str) -> str:
    """Model-version tag: when ``alias`` moved to this version (ISO 8601, UTC); devices sign it into their reports."""
    return f"edgeq.since.{alias}"


# The judge (registry_tools/judge.py): what the guard keeps between evaluations, and a person's override.
def guard_state_tag(alias: str) -> str:
    """Registered-model tag: the guard's state for ``alias`` (JSON: version, window, consecutive breaches, times)."""
    return f"edgeq.guard.state.{alias}"


DEFAULT_GUARD_MARGIN = 0.05  # share against above the limit by at most this much: mixed, held
DEFAULT_GUARD_CONSECUTIVE = 2  # evaluations a breach must persist over
DEFAULT_GUARD_COOLDOWN_S = 1800.0  # after a rollback, the alias is not judged again for this long
DEFAULT_SLOWDOWN_MARGIN = 0.05  # the median ratio must exceed --max-slowdown by this share to breach
# Model-version tag a person's override writes: a device that remembered refusing the version retries it once
# when the token differs from the one it recorded with the refusal.
TAG_RETRY = "edgeq.retry"


# Staged rollout (registry_tools/rollout.py decides, edge/rollout_share.py is the device's side) -----------------------
# On the version V behind an alias, while V is rolled out in stages: which share of the devices following that alias
# may take V, and the version P the others keep. JSON {"share": <percent, 0 < share < 100>, "fallback": "<P>"};
# absent (or removed when the last stage is reached) means every device takes V.
def rollout_tag(alias: str) -> str:
    """Model-version tag: the share of ``alias``'s devices that may take this version, and the fallback version."""
    return f"edgeq.rollout.{alias}"


def rollout_state_tag(alias: str) -> str:
    """Registered-model tag: the rollout behind ``alias`` (JSON: version, fallback, steps, stage, limits, pause)."""
    return f"edgeq.rollout.state.{alias}"


ROLLOUT_BY = "rollout"  # the history's "by" of the moves and stage steps `edgeq rollout` makes on its own
DEFAULT_ROLLOUT_STEPS = (5.0, 25.0, 100.0)
DEFAULT_ROLLOUT_MIN_STAGE_S = 3600.0  # a stage lasts at least this long before the judge may advance it
