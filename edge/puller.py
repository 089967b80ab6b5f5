"""One puller run: resolve, download, verify, install, benchmark, report.

Nothing is swapped in before it has been verified and has run one inference; a
rejected model leaves the current one serving. Results that cannot be sent wait in
the outbox for the next run.
"""
from __future__ import annotations

import enum
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from edge import contract
from edge.benchmark import BenchmarkResult, benchmark
from edge.bundle import BundleError, load_sample, verify_bundle
from edge.device_info import cpu_model, hostname
from edge.inference import TFLiteClassifier
from edge.lock import LockBusy, exclusive_lock
from edge.outbox import Outbox, Report
from edge.registry_client import ModelVersion, NotFound, RegistryClient, RegistryError, ServerUnreachable
from edge.runtime import Runtime, RuntimeMissingError, find_runtime
from edge.state import DeviceState
from edge.tflite_info import TFLiteFormatError, read_info_file


class Exit(enum.IntEnum):
    OK = 0
    BAD_CONFIG = 2
    UNREACHABLE = 3
    REJECTED = 4
    BUSY = 5


@dataclass(frozen=True)
class PullConfig:
    model: str
    state_dir: Path
    device_id: str
    alias: str = contract.DEFAULT_ALIAS
    version: str | None = None
    runs: int = 100
    warmup: int = 10
    threads: int | None = None
    lock_wait_s: float = 0.0
    runtime: str | None = None


@dataclass(frozen=True)
class Outcome:
    code: Exit
    message: str
    version: str | None = None
    bytes_downloaded: int = 0
    result: BenchmarkResult | None = None


class Rejected(Exception):
    """The downloaded model failed a check."""


def pull(config: PullConfig, client: RegistryClient) -> Outcome:
    """Run once; never raises for the expected failures, returns an Outcome instead."""
    try:
        device_id = contract.sanitize_device_id(config.device_id)
        runtime = find_runtime(config.runtime)
    except (ValueError, RuntimeMissingError) as exc:
        return Outcome(Exit.BAD_CONFIG, str(exc))
    state = DeviceState(config.state_dir)
    try:
        with exclusive_lock(state.lock_path, config.lock_wait_s):
            return _pull_locked(config, client, state, runtime, device_id)
    except LockBusy as exc:
        return Outcome(Exit.BUSY, f"{exc}; skipping this run")


def _pull_locked(config: PullConfig, client: RegistryClient, state: DeviceState, runtime: Runtime, device_id: str) -> Outcome:
    outbox = Outbox(state.outbox_dir)
    flushed = outbox.flush(client)
    flushed_note = f"; sent {flushed} queued report(s)" if flushed else ""
    try:
        mv = client.version(config.model, config.version) if config.version else client.version_by_alias(config.model, config.alias)
    except NotFound as exc:
        target = f"version {config.version}" if config.version else f"alias {config.alias!r}"
        return Outcome(Exit.BAD_CONFIG, f"model {config.model!r} {target} not found on the server ({exc})")
    except ServerUnreachable as exc:
        return Outcome(Exit.UNREACHABLE, f"{exc}; {len(outbox.pending())} report(s) queued")
    except RegistryError as exc:
        return Outcome(Exit.BAD_CONFIG, str(exc))

    sha = mv.tags.get(contract.TAG_SHA256, "")
    current = state.current()
    if current and current.same_as(mv.name, mv.version, sha) and current.benchmarked:
        return Outcome(Exit.OK, f"{mv.name} v{mv.version} already installed and benchmarked{flushed_note}", mv.version)

    downloaded = 0
    if not (current and current.same_as(mv.name, mv.version, sha)):
        try:
            downloaded = _fetch_and_install(mv, client, state, runtime)
        except Rejected as exc:
            return Outcome(Exit.REJECTED, f"rejected {mv.name} v{mv.version}: {exc}; kept {_describe(state)}", mv.version)
        except ServerUnreachable as exc:
            return Outcome(Exit.UNREACHABLE, f"download of v{mv.version} failed: {exc}", mv.version)

    installed = state.current()
    assert installed is not None
    bundle = Path(installed.path)
    images, labels = load_sample(bundle)
    classifier = TFLiteClassifier(bundle / contract.MODEL_FILE, runtime, config.threads)
    result = benchmark(classifier, images, labels, config.warmup, config.runs, config.threads)
    report = _report(mv, result, runtime, device_id)
    state.mark_benchmarked()
    summary = (
        f"{mv.name} v{mv.version} on {runtime.label}: p50 {result.latency.p50_ms:.2f} ms, "
        f"p90 {result.latency.p90_ms:.2f} ms"
        + (f", sample accuracy {result.accuracy:.3f}" if result.accuracy is not None else "")
        + (f", downloaded {downloaded} bytes" if downloaded else "")
    )
    try:
        client.log_batch(report.run_id, report.metrics, report.tags, report.timestamp_ms)
    except ServerUnreachable:
        outbox.put(report)
        return Outcome(Exit.UNREACHABLE, f"{summary}; server unreachable, report queued", mv.version, downloaded, result)
    except RegistryError as exc:
        outbox.put(report)
        return Outcome(Exit.UNREACHABLE, f"{summary}; report refused ({exc}), queued", mv.version, downloaded, result)
    return Outcome(Exit.OK, f"{summary}; reported to run {mv.run_id}{flushed_note}", mv.version, downloaded, result)


def _fetch_and_install(mv: ModelVersion, client: RegistryClient, state: DeviceState, runtime: Runtime) -> int:
    """Download to a temporary directory, verify, test one inference, then swap in."""
    if mv.tags.get(contract.TAG_FORMAT, "tflite") != "tflite":
        raise Rejected(f"it is a {mv.tags.get(contract.TAG_FORMAT)} model, not a .tflite")
    sha = mv.tags.get(contract.TAG_SHA256)
    if not sha:
        raise Rejected(f"the version has no {contract.TAG_SHA256!r} tag to verify against")
    declared = mv.tags.get(contract.TAG_MIN_RUNTIME)
    if declared and not runtime.supports(declared):
        raise Rejected(f"it needs runtime {declared}, this device has {runtime.label} (≈ TFLite {runtime.tf_equivalent})")
    tmp = state.new_download_dir()
    try:
        downloaded = sum(client.download(mv, name, tmp / name) for name in contract.DEVICE_FILES)
        _check(tmp, sha, runtime)
        state.install(tmp, mv.name, mv.version, sha)
        return downloaded
    except NotFound as exc:
        raise Rejected(f"a file is missing from the version's artifacts ({exc})") from exc
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _check(bundle: Path, sha: str, runtime: Runtime) -> None:
    try:
        verify_bundle(bundle, sha)
        info = read_info_file(bundle / contract.MODEL_FILE)
    except (BundleError, TFLiteFormatError) as exc:
        raise Rejected(str(exc)) from exc
    if not runtime.supports(info.min_runtime_version):
        raise Rejected(f"the model needs runtime {info.min_runtime_version}, this device has {runtime.label}")
    try:
        images, _ = load_sample(bundle)
        TFLiteClassifier(bundle / contract.MODEL_FILE, runtime).predict(images[0])
    except Exception as exc:  # noqa: BLE001 - any failure to load or run means: do not install
        raise Rejected(f"test inference failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc


def _report(mv: ModelVersion, result: BenchmarkResult, runtime: Runtime, device_id: str) -> Report:
    metrics = {contract.device_key(device_id, k): v for k, v in result.metrics().items()}
    tags = {
        contract.device_key(device_id, "hostname"): hostname(),
        contract.device_key(device_id, "cpu"): cpu_model(),
        contract.device_key(device_id, "runtime"): runtime.package,
        contract.device_key(device_id, "runtime_version"): runtime.version,
        contract.device_key(device_id, "model_version"): mv.version,
        contract.device_key(device_id, "threads"): str(result.threads or "default"),
    }
    return Report(run_id=mv.run_id, metrics=metrics, tags=tags, timestamp_ms=int(time.time() * 1000))


def _describe(state: DeviceState) -> str:
    current = state.current()
    return f"v{current.version} serving" if current else "no model installed"
