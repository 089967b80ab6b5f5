"""One puller run: resolve, download, verify, gate, install, benchmark, report, heartbeat.

Nothing becomes current before it has been verified and has passed the device's
health gate (edge/gate.py); a rejected model leaves the current one serving, is
reported once to its version's run and is not downloaded again until the alias
moves. Results that cannot be sent wait in the outbox for the next run. Every
expected failure ends in an Outcome with a documented exit code, never an exception.
"""
from __future__ import annotations

import logging
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge import contract, provenance
from edge.benchmark import BenchmarkResult, benchmark
from edge.bundle import BundleError, load_sample, verify_bundle
from edge.contract import ExitCode as Exit
from edge.device_info import cpu_model, hostname
from edge.gate import GateLimits, Verdict, judge
from edge.heartbeat import send_heartbeat
from edge.hook import run_hook
from edge.inference import TFLiteClassifier
from edge.lock import LockBusy, exclusive_lock
from edge.outbox import DEAD_LETTER, FlushResult, Outbox, Report
from edge.registry_client import (AuthError, ModelVersion, NotFound, RegistryClient, RegistryError,
                                  ServerUnreachable, TooLarge)
from edge.runtime import Runtime, RuntimeMissingError, find_runtime
from edge.state import DeviceState, Installed
from edge.tflite_info import TFLiteFormatError, read_info_file

log = logging.getLogger("edgeq-pull")

# Files other than the model may not be larger than this; the model may exceed its
# declared size by the slack only. Together they bound what a download can write.
MAX_AUX_FILE_BYTES = 64 << 20
SIZE_SLACK_BYTES = 64 << 10
MAX_MODEL_BYTES = 1 << 30  # when a version declares no size
MAX_SIGNATURE_BYTES = 4096
# Both runtimes apply XNNPACK to CPU inference by default; edgeq adds no other delegate.
DELEGATE = "xnnpack (runtime default)"


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
    gate: GateLimits = GateLimits()
    on_change: str | None = None
    hook_timeout_s: float = 120.0
    interval_s: int = contract.DEFAULT_INTERVAL_MINUTES * 60
    trust_key: Path | None = None  # Ed25519 public key: accept only versions whose manifest it signed


@dataclass(frozen=True)
class Outcome:
    code: Exit
    message: str
    version: str | None = None
    bytes_downloaded: int = 0
    result: BenchmarkResult | None = None


class Rejected(Exception):
    """The version failed a check on this device; ``remember`` when the same bytes would fail again."""

    def __init__(self, reason: str, remember: bool = True, result: BenchmarkResult | None = None,
                 verdict: Verdict | None = None):
        super().__init__(reason)
        self.remember, self.result, self.verdict = remember, result, verdict


def pull(config: PullConfig, client: RegistryClient) -> Outcome:
    """Run once; never raises for the expected failures, returns an Outcome instead."""
    try:
        device_id = contract.sanitize_device_id(config.device_id)
        if config.version is not None:
            contract.check_version_number(config.version)
        runtime = find_runtime(config.runtime)
    except (ValueError, RuntimeMissingError) as exc:
        return Outcome(Exit.BAD_CONFIG, str(exc))
    state = DeviceState(config.state_dir)
    try:
        with exclusive_lock(state.lock_path, config.lock_wait_s):
            return _Run(config, client, state, runtime, device_id).go()
    except LockBusy as exc:
        return Outcome(Exit.BUSY, f"{exc}; skipping this run")


class _Run:
    def __init__(self, config: PullConfig, client: RegistryClient, state: DeviceState, runtime: Runtime, device_id: str):
        self.config, self.client, self.state, self.runtime, self.device_id = config, client, state, runtime, device_id
        self.outbox = Outbox(state.outbox_dir)
        self.flushed = FlushResult()
        self.provenance: provenance.Provenance | None = None  # of the last benchmark

    def go(self) -> Outcome:
        cleaned = self.state.clean_downloads()
        if cleaned:
            log.info("removed %d download(s) left by an interrupted run", cleaned)
        self.flushed = self.outbox.flush(self.client)
        try:
            mv = self._resolve()
        except NotFound as exc:
            target = f"version {self.config.version}" if self.config.version else f"alias {self.config.alias!r}"
            return Outcome(Exit.BAD_CONFIG, f"model {self.config.model!r} {target} not found on the server ({exc})")
        except ServerUnreachable as exc:
            return Outcome(Exit.UNREACHABLE, f"{exc}; {len(self.outbox.pending())} report(s) queued")
        except RegistryError as exc:  # credentials refused, or the request itself
            return Outcome(Exit.BAD_CONFIG, str(exc))
        outcome = self._handle(mv)
        self._heartbeat(mv, outcome)
        return outcome

    def _resolve(self) -> ModelVersion:
        c = self.config
        return self.client.version(c.model, c.version) if c.version else self.client.version_by_alias(c.model, c.alias)

    def _handle(self, mv: ModelVersion) -> Outcome:
        sha = mv.tags.get(contract.TAG_SHA256, "")
        current = self.state.current()
        if current and current.same_as(mv.name, mv.version, sha):
            if current.benchmarked:
                return Outcome(Exit.OK, self._note(f"{mv.name} v{mv.version} already installed and benchmarked"), mv.version)
            # Made current by a run that stopped before its report: benchmark it again, no download.
            return self._benchmark_and_report(mv, current, downloaded=0)
        earlier = self.state.rejection_for(mv.name, mv.version, sha)
        if earlier:
            return Outcome(Exit.REJECTED, self._note(
                f"{mv.name} v{mv.version} was rejected on {earlier.at} ({earlier.reason}); not downloaded again "
                f"until the alias moves; {self._serving()}"), mv.version)
        try:
            staged, downloaded = self._stage(mv, sha)
            result, verdict = self._gate(mv, staged, current)
            if not verdict.healthy:
                self.state.discard(staged)
                raise Rejected(f"health gate: {verdict.reason}", result=result, verdict=verdict)
            old = self.state.activate(staged)
            self._run_hook(mv, staged, old)
        except Rejected as exc:
            return self._rejected(mv, sha, exc)
        except TooLarge as exc:
            return Outcome(Exit.REJECTED, f"rejected {mv.name} v{mv.version}: {exc}; {self._serving()}", mv.version)
        except ServerUnreachable as exc:
            return Outcome(Exit.UNREACHABLE, f"v{mv.version} not installed: {exc}; {self._serving()}", mv.version)
        except RegistryError as exc:  # credentials refused, or the request itself
            return Outcome(Exit.BAD_CONFIG, f"v{mv.version} not installed: {exc}", mv.version)
        except RuntimeMissingError as exc:
            return Outcome(Exit.BAD_CONFIG, f"v{mv.version} not installed: {exc}; {self._serving()}", mv.version)
        return self._send(self._report(mv, result, verdict), staged, self._summary(mv, result, downloaded), mv, downloaded, result)

    # -- steps -------------------------------------------------------------------

    def _stage(self, mv: ModelVersion, sha: str) -> tuple[Installed, int]:
        """A verified bundle for ``mv`` in models/: left by an interrupted run, or downloaded now."""
        _check_tags(mv, self.runtime)
        staged = self.state.staged(mv.name, mv.version, sha)
        if staged:
            try:
                self._check(Path(staged.path), sha)
                log.info("found v%s already downloaded by an interrupted run; verified, not downloaded again", mv.version)
                return staged, 0
            except Rejected:
                self.state.discard(staged)
        tmp = self.state.new_download_dir()
        try:
            downloaded = 0
            for name in contract.DEVICE_FILES:
                downloaded += self.client.download(mv, name, tmp / name, _cap(mv, name))
            if self.config.trust_key:
                downloaded += self._download_signature(mv, tmp)
            self._check(tmp, sha)
            return self.state.stage(tmp, mv.name, mv.version, sha), downloaded
        except NotFound as exc:
            raise Rejected(f"a file is missing from the version's artifacts ({exc})") from exc
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def _download_signature(self, mv: ModelVersion, bundle: Path) -> int:
        try:
            return self.client.download(mv, contract.SIGNATURE_FILE, bundle / contract.SIGNATURE_FILE, MAX_SIGNATURE_BYTES)
        except NotFound:
            raise Rejected(f"unsigned: the version has no {contract.SIGNATURE_FILE}, and this device trusts only "
                           f"signed versions (--trust-key)") from None

    def _check(self, bundle: Path, sha: str) -> None:
        _check(bundle, sha, self.runtime)
        if self.config.trust_key:
            from edge.signing import SignatureError, verify_manifest

            try:
                verify_manifest(bundle, self.config.trust_key)
            except SignatureError as exc:
                raise Rejected(f"signature: {exc}") from exc

    def _gate(self, mv: ModelVersion, staged: Installed, current: Installed | None) -> tuple[BenchmarkResult, Verdict]:
        registered = self.client.run_metrics(mv.run_id).get(contract.M_ACCURACY) if mv.run_id else None
        replaced_p50 = None
        if self.config.gate.max_slowdown is not None and current:
            replaced_p50 = self._benchmark(Path(current.path)).latency.p50_ms
        result = self._benchmark(Path(staged.path))  # last, so self.provenance describes this one
        return result, judge(result, registered, self.config.gate, replaced_p50)

    def _benchmark(self, bundle: Path) -> BenchmarkResult:
        images, labels = load_sample(bundle)
        classifier = TFLiteClassifier(bundle / contract.MODEL_FILE, self.runtime, self.config.threads)
        start = provenance.before()
        result = benchmark(classifier, images, labels, self.config.warmup, self.config.runs, self.config.threads)
        self.provenance = provenance.after(start, threads=self.config.threads, runtime=self.runtime.package,
                                           runtime_version=self.runtime.version, delegate=DELEGATE)
        return result

    def _run_hook(self, mv: ModelVersion, staged: Installed, old: tuple[Installed | None, Installed | None]) -> None:
        if not self.config.on_change:
            return
        previous = old[0]
        env = {
            "EDGEQ_MODEL_PATH": str(self.state.current_link / contract.MODEL_FILE),
            "EDGEQ_MODEL_DIR": str(self.state.current_link),
            "EDGEQ_MODEL_NAME": mv.name,
            "EDGEQ_MODEL_VERSION": mv.version,
            "EDGEQ_PREVIOUS_VERSION": previous.version if previous else "",
        }
        hook = run_hook(self.config.on_change, env, self.config.hook_timeout_s)
        (log.info if hook.ok else log.error)("on-change hook for v%s: %s\n%s", mv.version, hook.describe(), hook.output.rstrip())
        if not hook.ok:
            self.state.restore(*old)
            self.state.discard(staged)
            back = f"rolled back to v{previous.version}" if previous else "no model installed"
            raise Rejected(f"on-change hook failed ({hook.describe()}); {back}")

    def _benchmark_and_report(self, mv: ModelVersion, installed: Installed, downloaded: int) -> Outcome:
        result = self._benchmark(Path(installed.path))
        return self._send(self._report(mv, result, Verdict((), None)), installed, self._summary(mv, result, downloaded),
                          mv, downloaded, result)

    def _rejected(self, mv: ModelVersion, sha: str, exc: Rejected) -> Outcome:
        reason = str(exc)
        remember = (lambda: self.state.remember_rejection(mv.name, mv.version, sha, reason)) if exc.remember else None
        _, note = self._deliver(self._report(mv, exc.result, exc.verdict, reason=reason), remember)
        return Outcome(Exit.REJECTED, self._note(f"rejected {mv.name} v{mv.version}: {reason}; {self._serving()}; {note}"),
                       mv.version, 0, exc.result)

    # -- reporting ---------------------------------------------------------------

    def _report(self, mv: ModelVersion, result: BenchmarkResult | None, verdict: Verdict | None, reason: str = "") -> Report:
        key = lambda name: contract.device_key(self.device_id, name)  # noqa: E731
        metrics = {key(k): v for k, v in (result.metrics() if result else {}).items()}
        if result:
            metrics[key(contract.D_SAMPLE_SIZE)] = float(result.sample_size)
            metrics.update({key(k): v for k, v in (self.provenance.metrics if self.provenance else {}).items()})
        if verdict and verdict.accuracy_bound is not None:
            metrics[key(contract.D_ACCURACY_BOUND)] = verdict.accuracy_bound
        tags = {
            key(contract.D_STATUS): contract.STATUS_REJECTED if reason else contract.STATUS_HEALTHY,
            key(contract.D_REASON): reason,
            key(contract.D_HOSTNAME): hostname(),
            key(contract.D_CPU): cpu_model(),
            key(contract.D_RUNTIME): self.runtime.package,
            key(contract.D_RUNTIME_VERSION): self.runtime.version,
            key(contract.D_MODEL_VERSION): mv.version,
            key(contract.D_ALIAS): self.config.alias if not self.config.version else "",
            key(contract.D_THREADS): str(self.config.threads or "default"),
            key(contract.D_REPORTED_AT): time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if result and self.provenance:
            tags.update({key(k): v for k, v in self.provenance.tags.items()})
        return Report(run_id=mv.run_id, metrics=metrics, tags=tags, timestamp_ms=int(time.time() * 1000))

    def _deliver(self, report: Report, commit: Callable[[], object] | None = None) -> tuple[Exit, str]:
        """Queue the report durably, then ``commit`` (record on disk what the report says), then send it.

        In that order, a run killed at any point loses no report: it is in the outbox
        before the device records it measured (or rejected) a version. Sent: removed. Server down or credentials
        refused: stays queued (exit 3 or 2). The server refuses the report itself: kept in
        the dead-letter folder (exit 2), as sending it again could never work.
        """
        path = self.outbox.put(report)
        if commit:
            commit()
        try:
            self.outbox.send(path, self.client)
            return Exit.OK, f"reported to run {report.run_id}"
        except ServerUnreachable:
            return Exit.UNREACHABLE, "report not sent, queued in the outbox"
        except AuthError as exc:
            return Exit.BAD_CONFIG, f"report not sent ({exc}), queued in the outbox"
        except RegistryError as exc:
            return Exit.BAD_CONFIG, f"report refused by the server ({exc}), kept in outbox/{DEAD_LETTER}/"

    def _send(self, report: Report, installed: Installed, summary: str, mv: ModelVersion, downloaded: int,
              result: BenchmarkResult) -> Outcome:
        code, note = self._deliver(report, lambda: self.state.mark_benchmarked(installed))
        return Outcome(code, self._note(f"{summary}; {note}"), mv.version, downloaded, result)

    def _heartbeat(self, mv: ModelVersion, outcome: Outcome) -> None:
        current = self.state.current()
        try:
            send_heartbeat(self.client, self.state.root, self.config, self.device_id, current, outcome.code, outcome.message,
                           outcome.result if outcome.code == Exit.OK else None,
                           self.provenance.throttled if self.provenance else None)
        except RegistryError as exc:  # a missed heartbeat costs nothing: the next run sends one
            log.debug("heartbeat not sent: %s", exc)

    def _summary(self, mv: ModelVersion, result: BenchmarkResult, downloaded: int) -> str:
        return (
            f"{mv.name} v{mv.version} on {self.runtime.label} (device {self.device_id}): "
            f"p50 {result.latency.p50_ms:.2f} ms, p99 {result.latency.p99_ms:.2f} ms"
            + (f", sample accuracy {result.accuracy:.3f}" if result.accuracy is not None else "")
            + (f", downloaded {downloaded} bytes" if downloaded else "")
        )

    def _note(self, message: str) -> str:
        extra = self.flushed.note()
        return f"{message}; {extra}" if extra else message

    def _serving(self) -> str:
        current = self.state.current()
        return f"v{current.version} keeps serving" if current else "no model installed"


def _cap(mv: ModelVersion, filename: str) -> int:
    if filename != contract.MODEL_FILE:
        return MAX_AUX_FILE_BYTES
    declared = mv.tags.get(contract.TAG_SIZE_BYTES, "")
    return min(int(declared) + SIZE_SLACK_BYTES, MAX_MODEL_BYTES) if declared.isdigit() else MAX_MODEL_BYTES


def _check_tags(mv: ModelVersion, runtime: Runtime) -> None:
    if mv.tags.get(contract.TAG_FORMAT, contract.FORMAT_TFLITE) != contract.FORMAT_TFLITE:
        raise Rejected(f"it is a {mv.tags.get(contract.TAG_FORMAT)} model, not a .tflite")
    if not mv.tags.get(contract.TAG_SHA256):
        raise Rejected(f"the version has no {contract.TAG_SHA256!r} tag to verify against")
    declared = mv.tags.get(contract.TAG_MIN_RUNTIME)
    if declared and not runtime.supports(declared):
        raise Rejected(f"it needs runtime {declared}, this device has {runtime.label} (≈ TFLite {runtime.tf_equivalent})")


def _check(bundle: Path, sha: str, runtime: Runtime) -> None:
    try:
        verify_bundle(bundle, sha)
    except BundleError as exc:  # may be the network's doing: the next run downloads again
        raise Rejected(str(exc), remember=False) from exc
    try:
        info = read_info_file(bundle / contract.MODEL_FILE)
    except TFLiteFormatError as exc:
        raise Rejected(str(exc)) from exc
    if not runtime.supports(info.min_runtime_version):
        raise Rejected(f"the model needs runtime {info.min_runtime_version}, this device has {runtime.label}")
    try:
        images, _ = load_sample(bundle)
        TFLiteClassifier(bundle / contract.MODEL_FILE, runtime).predict(images[0])
    except RuntimeMissingError:  # this device's fault, not the version's: neither rejected nor remembered
        raise
    except Exception as exc:  # noqa: BLE001 - any failure to load or run means: do not install
        raise Rejected(f"test inference failed: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from exc
