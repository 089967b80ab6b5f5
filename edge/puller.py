"""One puller run: resolve, download, verify, gate, install, benchmark, report, heartbeat.

Nothing becomes current before it has been verified and has passed the device's
health gate (edge/gate.py). Everything from the registry is untrusted: every claim
of a bundle is checked (edge/bundle.py), and the model is loaded, checked and
benchmarked only in a child process bounded in time and memory (edge/sandbox.py).
A refused version leaves the current one serving; when its content is at fault it
is reported once to its version's run and not downloaded again until the alias
moves, while a failure of the network or the store is retried by the next run and
blamed on nobody. Every expected failure ends in an Outcome with a documented exit
code (docs/device-failures.md), never an exception.
"""
from __future__ import annotations

import dataclasses
import errno
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from edge import contract, identity, provenance, rollout_share
from edge.benchmark import BenchmarkResult
from edge.bundle import BundleError, check_sample_header, is_sha256, read_labels, sha256_file, verify_bundle
from edge.contract import ExitCode as Exit
from edge.gate import GateLimits, Verdict, judge
from edge.heartbeat import fleet_run_id, send_heartbeat
from edge.hook import run_hook
from edge.lock import LockBusy, exclusive_lock
from edge.outbox import DEAD_LETTER, FLUSH_DEADLINE_SHARE, FlushResult, Outbox, Report, report_id
from edge.registry_client import (AuthError, ModelVersion, NotFound, Refused, RegistryClient, RegistryError,
                                  ServerUnreachable, TooLarge)
from edge.report import ReportContext, build_report
from edge.runtime import Runtime, RuntimeMissingError, find_runtime
from edge.sandbox import DEFAULT_MAX_RSS_MB, CandidateJob, CandidateRefused, SandboxError, SandboxLimits, run_candidate
from edge.state import DeviceState, Installed, LayoutError
from edge.tflite_info import TFLiteFormatError, read_info_file

log = logging.getLogger("edgeq-pull")

# Files other than the model may not be larger than this; the model may exceed its
# declared size by the slack only. Together they bound what a download can write.
MAX_AUX_FILE_BYTES = 64 << 20
SIZE_SLACK_BYTES = 64 << 10
MAX_MODEL_BYTES = 1 << 30  # when a version declares no size
MAX_SIGNATURE_BYTES = 4096
# Free space a download needs beyond the model's declared size: the small files and the filesystem's own needs.
FREE_SPACE_MARGIN_BYTES = 16 << 20
# Both runtimes apply XNNPACK to CPU inference by default; edgeq adds no other delegate.
DELEGATE = "xnnpack (runtime default)"
# The manifest first (small), the model last (large): a file missing from the store costs the least.
DOWNLOAD_ORDER = (contract.MANIFEST_FILE, contract.LABELS_FILE, contract.SAMPLE_FILE, contract.MODEL_FILE)
_STORAGE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EPERM, errno.EDQUOT}


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
    gate: GateLimits = GateLimits(max_rss_mb=DEFAULT_MAX_RSS_MB)
    on_change: str | None = None
    hook_timeout_s: float = 120.0
    interval_s: int = contract.DEFAULT_INTERVAL_MINUTES * 60
    heartbeat_s: int = contract.DEFAULT_HEARTBEAT_MINUTES * 60  # a quiet run's runs/update goes at most this often
    trust_key: Path | None = None  # Ed25519 public key: accept only versions whose manifest it signed
    check_timeout_s: float = 300.0  # a candidate's load + sample check + benchmark, in its child process
    run_limit_s: float | None = None  # a run holding the lock longer than this has overrun: the next one takes over

    @property
    def sandbox(self) -> SandboxLimits:
        return SandboxLimits(self.check_timeout_s, self.gate.max_rss_mb or DEFAULT_MAX_RSS_MB)


@dataclass(frozen=True)
class Outcome:
    code: Exit
    message: str
    version: str | None = None
    bytes_downloaded: int = 0
    result: BenchmarkResult | None = None


class Rejected(Exception):
    """The version failed a check on this device.

    ``remember``: the same bytes would fail again, so they are not downloaded again until
    the alias moves; ``report``: the version's run is told (its content is at fault).
    """

    def __init__(self, reason: str, remember: bool = True, result: BenchmarkResult | None = None,
                 verdict: Verdict | None = None, report: bool = True):
        super().__init__(reason)
        self.remember, self.result, self.verdict, self.report = remember, result, verdict, report


class Transient(Exception):
    """The network or the store failed in a way the next run may not meet: nobody's fault, nothing remembered."""


class StorageError(Exception):
    """This device cannot write its state dir (full, read-only, not permitted)."""


class NoSigning(Exception):
    """The device cannot sign its evidence: the cryptography package is missing."""


def pull(config: PullConfig, client: RegistryClient) -> Outcome:
    """Run once; never raises for the expected failures, returns an Outcome instead."""
    try:
        device_id = contract.sanitize_device_id(config.device_id)
        if config.version is not None:
            contract.check_version_number(config.version)
        runtime = find_runtime(config.runtime)
    except (ValueError, RuntimeMissingError) as exc:
        return Outcome(Exit.BAD_CONFIG, str(exc))
    try:
        state = DeviceState(config.state_dir)
        with exclusive_lock(state.lock_path, config.lock_wait_s, config.run_limit_s):
            return _locked(config, client, state, runtime, device_id)
    except LockBusy as exc:
        return Outcome(Exit.BUSY, f"{exc}; skipping this run")
    except (StorageError, LayoutError) as exc:
        return Outcome(Exit.STORAGE, str(exc))
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        return Outcome(Exit.STORAGE, storage_message(config.state_dir, exc))


def _locked(config: PullConfig, client: RegistryClient, state: DeviceState, runtime: Runtime, device_id: str) -> Outcome:
    """The run under the lock; a key this device cannot keep or use ends it here, the lock released cleanly."""
    try:
        key = device_key(state.root)
    except StorageError as exc:
        return Outcome(Exit.STORAGE, str(exc))
    except NoSigning as exc:
        return Outcome(Exit.BAD_CONFIG, str(exc))
    return _Run(config, client, state, runtime, device_id, key).go()


def device_key(state_root: Path) -> identity.DeviceKey:
    """This device's signing key, made on first use; StorageError when the state dir cannot hold it."""
    try:
        return identity.load_or_create(state_root)
    except ImportError as exc:
        raise NoSigning(f"signing this device's reports needs the cryptography package ({exc}): "
                        f"pip install \"edgeq[edge]\"") from None
    except NotADirectoryError as exc:  # `identity` is a file or a link: ours to report, not to remove
        raise StorageError(f"cannot keep the device key: {exc}; the current model is untouched") from None
    except OSError as exc:
        if exc.errno not in _STORAGE_ERRNOS:
            raise
        raise StorageError(storage_message(state_root, exc)) from None


def storage_message(state_dir: Path, exc: OSError) -> str:
    """One line naming what the state dir lacks and the fix; the current model was not touched."""
    fix = ("free space on that filesystem" if exc.errno in (errno.ENOSPC, errno.EDQUOT)
           else "make it writable by this user, or give --state-dir a writable place")
    where = f" ({exc.filename})" if exc.filename else ""
    return f"cannot write the state dir {state_dir}: {exc.strerror or exc}{where}; {fix}; the current model is untouched"


class _Run:
    def __init__(self, config: PullConfig, client: RegistryClient, state: DeviceState, runtime: Runtime, device_id: str,
                 key: identity.DeviceKey):
        self.config, self.client, self.state, self.runtime, self.device_id = config, client, state, runtime, device_id
        self.key = key  # signs every report and status this run sends
        self.outbox = Outbox(state.outbox_dir)
        self.flushed = FlushResult()
        self.provenance: provenance.Provenance | None = None  # of the last benchmark
        self.device_run = ""  # the device's run in the fleet experiment: where its reports go

    def go(self) -> Outcome:
        cleaned = self.state.clean_downloads() + self.state.clean_temporary() + self.outbox.clean_temporary()
        if cleaned:
            log.info("removed %d temporary file(s) left by an interrupted run", cleaned)
        repaired = self.state.repair_current()
        if repaired:
            log.warning(repaired)
        self.flushed = self.outbox.flush(self.client, self._flush_budget())
        try:
            mv = self._resolve()
            self.device_run = fleet_run_id(self.client, self.state.root, self.config.model, self.device_id)
        except NotFound as exc:  # its message names the model, the alias or version, and the fix
            return Outcome(Exit.BAD_CONFIG, str(exc))
        except ServerUnreachable as exc:
            return Outcome(Exit.UNREACHABLE, f"{exc}; {len(self.outbox.pending())} report(s) queued")
        except RegistryError as exc:  # credentials refused, or the request itself
            return Outcome(Exit.BAD_CONFIG, str(exc))
        try:
            staged = self._staged(mv)
        except NotFound as exc:
            return Outcome(Exit.BAD_CONFIG, f"model {self.config.model!r}: the fallback of v{mv.version}'s staged rollout "
                                            f"is not on the server ({exc.detail}); {self._serving()}", mv.version)
        except ServerUnreachable as exc:
            return Outcome(Exit.UNREACHABLE, f"{exc}; {self._serving()}", mv.version)
        except RegistryError as exc:
            return Outcome(Exit.BAD_CONFIG, str(exc), mv.version)
        outcome = staged if isinstance(staged, Outcome) else self._handle(staged)
        self._heartbeat(mv, outcome)
        return outcome

    def _flush_budget(self) -> float | None:
        """Seconds the queued reports may take: a share of --deadline, so a backlog never costs the device its update."""
        seconds = self.client.deadline.seconds
        return None if seconds is None else seconds * FLUSH_DEADLINE_SHARE

    def _resolve(self) -> ModelVersion:
        c = self.config
        return self.client.version(c.model, c.version) if c.version else self.client.version_by_alias(c.model, c.alias)

    def _staged(self, mv: ModelVersion) -> ModelVersion | Outcome:
        """The version this device takes while the alias's version ``mv`` is rolled out in stages (edge/rollout_share.py).

        Inside the share, or already running ``mv``: ``mv``. Outside it: the fallback, an Outcome without a request
        when the device already runs it. A device pinned to a version (--version) takes what it was given.
        """
        if self.config.version:
            return mv
        try:
            share = rollout_share.share_of(mv.tags, self.config.alias)
        except ValueError as exc:
            return Outcome(Exit.BAD_CONFIG, f"v{mv.version} of {mv.name!r} carries an unreadable staged-rollout tag "
                                            f"{contract.rollout_tag(self.config.alias)!r} ({exc}): nothing changed, "
                                            f"{self._serving()}; the operator fixes it (edgeq rollout status)", mv.version)
        if share is None:
            return mv
        current = self.state.current()
        if (current and (current.name, current.version) == (mv.name, mv.version)) \
                or rollout_share.takes(self.device_id, mv.version, share.percent):
            return mv  # a device that took the version keeps it whatever the share does later
        stage = share.outside(mv.version)
        if current and (current.name, current.version) == (mv.name, share.fallback) and current.benchmarked:
            return Outcome(Exit.OK, self._note(f"{mv.name}: {stage}; v{share.fallback} keeps serving"), share.fallback)
        log.info("%s: %s; taking its fallback v%s", mv.name, stage, share.fallback)
        return self.client.version(mv.name, share.fallback)

    def _handle(self, mv: ModelVersion) -> Outcome:
        sha = mv.tags.get(contract.TAG_SHA256, "")
        current = self.state.current()
        if current and current.same_as(mv.name, mv.version, sha) and current.benchmarked:
            return Outcome(Exit.OK, self._note(f"{mv.name} v{mv.version} already installed and benchmarked"), mv.version)
        earlier = self.state.rejection_for(mv.name, mv.version, sha)
        retry = mv.tags.get(contract.TAG_RETRY, "")
        if earlier and not (retry and retry != earlier.retry):  # an operator's override asks for one more try
            return Outcome(Exit.REJECTED, self._note(
                f"{mv.name} v{mv.version} was rejected on {earlier.at} ({earlier.reason}); not downloaded again "
                f"until the alias moves or an operator asks for a retry (edgeq promote --override-guard); "
                f"{self._serving()}"), mv.version)
        try:
            if current and current.same_as(mv.name, mv.version, sha):
                # Made current by a run that stopped before its report: benchmark it again, no download.
                return self._benchmark_and_report(mv, current)
            registered = self._precheck(mv, sha)
            staged, downloaded = self._stage(mv, sha)
            result, verdict = self._gate(mv, staged, current, registered)
            if not verdict.healthy:
                self.state.discard(staged)
                raise Rejected(f"health gate: {verdict.reason}", result=result, verdict=verdict)
            old = self.state.activate(staged)
            self._run_hook(mv, staged, old)
        except Rejected as exc:
            return self._rejected(mv, sha, exc)
        except Transient as exc:
            return Outcome(Exit.UNREACHABLE, self._note(f"v{mv.version} not installed: {exc}; tried again next run; "
                                                        f"{self._serving()}"), mv.version)
        except ServerUnreachable as exc:
            return Outcome(Exit.UNREACHABLE, f"v{mv.version} not installed: {exc}; {self._serving()}", mv.version)
        except RegistryError as exc:  # credentials refused, or the request itself
            return Outcome(Exit.BAD_CONFIG, f"v{mv.version} not installed: {exc}", mv.version)
        except (RuntimeMissingError, SandboxError) as exc:  # this device's fault, not the version's
            return Outcome(Exit.BAD_CONFIG, f"v{mv.version} not installed: {exc}; {self._serving()}", mv.version)
        return self._send(self._report(mv, result, verdict), staged, self._summary(mv, result, downloaded), mv, downloaded, result)

    # -- steps -------------------------------------------------------------------

    def _precheck(self, mv: ModelVersion, sha: str) -> float | None:
        """What the version's metadata must say before anything is downloaded; returns its registered accuracy."""
        _check_tags(mv, sha, self.runtime)
        registered = self.client.registered_accuracy(mv.run_id) if mv.run_id else None
        if registered is None and self.config.gate.min_sample_accuracy is None:
            raise Rejected(
                f"v{mv.version} has no registered accuracy to check it against: log {contract.M_ACCURACY} on its run "
                f"{mv.run_id or '(none)'}, or give --min-sample-accuracy", remember=False, report=False)
        self._check_free_space(mv)
        return registered

    def _check_free_space(self, mv: ModelVersion) -> None:
        declared = mv.tags.get(contract.TAG_SIZE_BYTES, "")
        needed = (int(declared) + SIZE_SLACK_BYTES if declared.isdigit() else 0) + FREE_SPACE_MARGIN_BYTES
        free = shutil.disk_usage(self.state.root).free
        if free < needed:
            raise StorageError(
                f"not enough free space in {self.state.root} for v{mv.version}: {free >> 20} MB free, "
                f"{needed >> 20} MB needed; free space there or give --state-dir another place; "
                f"{self._serving()}")

    def _stage(self, mv: ModelVersion, sha: str) -> tuple[Installed, int]:
        """A verified bundle for ``mv`` in models/: left by an interrupted run, or downloaded now."""
        staged = self.state.staged(mv.name, mv.version, sha)
        if staged:
            try:
                self._verify(Path(staged.path), mv, sha)
                log.info("found v%s already downloaded by an interrupted run; verified, not downloaded again", mv.version)
                return staged, 0
            except (BundleError, Rejected):
                self.state.discard(staged)
        first = self.state.new_download_dir()
        try:
            downloaded = self._download(mv, first)
            try:
                self._verify(first, mv, sha)
                return self.state.stage(first, mv.name, mv.version, sha), downloaded
            except BundleError as exc:
                return self._second_download(mv, sha, first, exc, downloaded)
        finally:
            shutil.rmtree(first, ignore_errors=True)

    def _second_download(self, mv: ModelVersion, sha: str, first: Path, problem: BundleError,
                         downloaded: int) -> tuple[Installed, int]:
        """Download again: the same bytes failing the same check is the version's content, other bytes the network's."""
        log.warning("v%s failed verification (%s); downloading it again to tell the network from the content",
                    mv.version, problem)
        second = self.state.new_download_dir()
        try:
            downloaded += self._download(mv, second)
            try:
                self._verify(second, mv, sha)
                return self.state.stage(second, mv.name, mv.version, sha), downloaded
            except BundleError as again:
                if _digests(first) == _digests(second):
                    raise Rejected(str(again)) from again
                raise Transient(f"two downloads gave different bytes ({again})") from again
        finally:
            shutil.rmtree(second, ignore_errors=True)

    def _download(self, mv: ModelVersion, into: Path) -> int:
        try:
            downloaded = sum(self.client.download(mv, name, into / name, _cap(mv, name)) for name in DOWNLOAD_ORDER)
        except NotFound as exc:
            raise Transient(f"a file is missing from the version's artifacts ({exc})") from exc
        except TooLarge as exc:
            raise Rejected(str(exc)) from exc
        if self.config.trust_key:
            downloaded += self._download_signature(mv, into)
        return downloaded

    def _download_signature(self, mv: ModelVersion, bundle: Path) -> int:
        try:
            return self.client.download(mv, contract.SIGNATURE_FILE, bundle / contract.SIGNATURE_FILE, MAX_SIGNATURE_BYTES)
        except NotFound:
            raise Rejected(f"unsigned: the version has no {contract.SIGNATURE_FILE}, and this device trusts only "
                           f"signed versions (--trust-key)") from None

    def _verify(self, bundle: Path, mv: ModelVersion, sha: str) -> None:
        """Every claim of the bundle that can be checked without running it; BundleError or Rejected."""
        verify_bundle(bundle, sha, mv.tags)
        _check_sample_shape(bundle, mv.tags.get(contract.TAG_INPUT_SHAPE))
        try:
            info = read_info_file(bundle / contract.MODEL_FILE)
        except TFLiteFormatError as exc:
            raise Rejected(str(exc)) from exc
        if not self.runtime.supports(info.min_runtime_version):
            raise Rejected(f"the model needs runtime {info.min_runtime_version}, this device has {self.runtime.label}")
        if self.config.trust_key:
            from edge.signing import SignatureError, verify_manifest

            try:
                verify_manifest(bundle, self.config.trust_key)
            except SignatureError as exc:
                raise Rejected(f"signature: {exc}") from exc

    def _gate(self, mv: ModelVersion, staged: Installed, current: Installed | None,
              registered: float | None) -> tuple[BenchmarkResult, Verdict]:
        replaced_p50 = None
        if self.config.gate.max_slowdown is not None and current:
            try:
                replaced_p50 = self._benchmark(Path(current.path)).latency.p50_ms
            except CandidateRefused as exc:
                log.warning("the current v%s could not be benchmarked (%s); --max-slowdown not applied",
                            current.version, exc)
        try:
            result = self._benchmark(Path(staged.path))  # last, so self.provenance describes this one
        except CandidateRefused as exc:
            self.state.discard(staged)
            raise Rejected(str(exc)) from exc
        return result, judge(result, registered, self.config.gate, replaced_p50)

    def _benchmark(self, bundle: Path) -> BenchmarkResult:
        """Load, check and time the bundle's model in a bounded child process; CandidateRefused when it fails."""
        c = self.config
        job = CandidateJob(bundle, len(read_labels(bundle)), self.runtime.package, c.threads, c.warmup, c.runs)
        start = provenance.before()
        result = run_candidate(job, c.sandbox, self.state.root / "downloads")
        self.provenance = provenance.after(start, threads=c.threads, runtime=self.runtime.package,
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

    def _benchmark_and_report(self, mv: ModelVersion, installed: Installed) -> Outcome:
        try:
            result = self._benchmark(Path(installed.path))
        except CandidateRefused as exc:
            raise Rejected(str(exc)) from exc
        return self._send(self._report(mv, result, Verdict((), None)), installed, self._summary(mv, result, 0),
                          mv, 0, result)

    def _rejected(self, mv: ModelVersion, sha: str, exc: Rejected) -> Outcome:
        reason = str(exc)
        retry = mv.tags.get(contract.TAG_RETRY, "")
        remember = (lambda: self.state.remember_rejection(mv.name, mv.version, sha, reason, retry)) if exc.remember else None
        if exc.report:
            _, note = self._deliver(self._report(mv, exc.result, exc.verdict, reason=reason),
                                    self._report_id(mv, sha, contract.STATUS_REJECTED), remember)
        else:
            note = "not reported (nothing is wrong with the version's content)"
            if remember:
                remember()
        return Outcome(Exit.REJECTED, self._note(f"rejected {mv.name} v{mv.version}: {reason}; {self._serving()}; {note}"),
                       mv.version, 0, exc.result)

    # -- reporting ---------------------------------------------------------------

    def _report(self, mv: ModelVersion, result: BenchmarkResult | None, verdict: Verdict | None, reason: str = "") -> Report:
        return build_report(ReportContext(self.device_id, self.config.alias, self.config.version, self.config.threads,
                                          self.runtime, self.device_run, self.key, self.state.root),
                            mv, result, verdict, self.provenance, reason)

    def _report_id(self, mv: ModelVersion, sha: str, verdict: str) -> str:
        return report_id(mv.name, mv.version, sha, self.device_id, verdict)

    def _deliver(self, report: Report, key: str, commit: Callable[[], object] | None = None,
                 retried: bool = False) -> tuple[Exit, str]:
        """Queue the report durably under its id ``key``, then ``commit`` (record on disk what the report says), then send it.

        In that order, a run killed at any point loses no report: it is in the outbox
        before the device records it measured (or rejected) a version. A run killed before
        the commit left the report queued under ``key``, and maybe sent: the next run sends
        that very report again (same time, same figures: the server stores it once), not a
        second one. Sent: removed. Server down or credentials
        refused: stays queued (exit 3 or 2). The server refuses the report itself: kept in
        the dead-letter folder (exit 2), as sending it again could never work.
        """
        earlier = self.outbox.unrecorded(key)
        if earlier:
            log.info("an earlier run stopped before recording what it reported: its report goes again, unchanged")
            report = dataclasses.replace(earlier, run_id=report.run_id)
        path = self.outbox.put(report, key)
        if commit:
            commit()
        self.outbox.recorded()
        try:
            self.outbox.send(path, self.client)
            return Exit.OK, f"reported to run {report.run_id}"
        except ServerUnreachable:
            return Exit.UNREACHABLE, "report not sent, queued in the outbox"
        except AuthError as exc:
            return Exit.BAD_CONFIG, f"report not sent ({exc}), queued in the outbox"
        except Refused as exc:
            if report.run_id == self.device_run and not retried and self._device_run_replaced():
                # The device's run was gone (deleted, or a server started afresh): the report goes to the new one.
                return self._deliver(dataclasses.replace(report, run_id=self.device_run), key, retried=True)
            return Exit.BAD_CONFIG, f"report refused by the server ({exc}), kept in outbox/{DEAD_LETTER}/"
        except RegistryError as exc:
            return Exit.BAD_CONFIG, f"report not sent ({exc}), queued in the outbox"

    def _device_run_replaced(self) -> bool:
        """Look the device's run up again; True when it was gone and another now stands in its place."""
        try:
            found = fleet_run_id(self.client, self.state.root, self.config.model, self.device_id, fresh=True)
        except RegistryError:
            return False
        replaced, self.device_run = found != self.device_run, found
        return replaced

    def _send(self, report: Report, installed: Installed, summary: str, mv: ModelVersion, downloaded: int,
              result: BenchmarkResult) -> Outcome:
        key = self._report_id(mv, installed.sha256, contract.STATUS_HEALTHY)
        code, note = self._deliver(report, key, lambda: self.state.mark_benchmarked(installed))
        return Outcome(code, self._note(f"{summary}; {note}"), mv.version, downloaded, result)

    def _heartbeat(self, mv: ModelVersion, outcome: Outcome) -> None:
        current = self.state.current()
        try:
            send_heartbeat(self.client, self.state.root, self.config, self.device_id, current, outcome.code, outcome.message,
                           outcome.result if outcome.code == Exit.OK else None,
                           self.provenance.throttled if self.provenance else None, self.key)
        except RegistryError as exc:  # a missed heartbeat costs nothing: the next run sends one
            log.debug("heartbeat not sent: %s", exc)

    def _summary(self, mv: ModelVersion, result: BenchmarkResult, downloaded: int) -> str:
        return (
            f"{mv.name} v{mv.version} on {self.runtime.label} (device {self.device_id}): "
            f"p50 {result.latency.p50_ms:.2f} ms, p99 {result.latency.p99_ms:.2f} ms"
            + (f", sample accuracy {result.accuracy:.1%}" if result.accuracy is not None else "")
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


def _check_tags(mv: ModelVersion, sha: str, runtime: Runtime) -> None:
    if mv.tags.get(contract.TAG_FORMAT, contract.FORMAT_TFLITE) != contract.FORMAT_TFLITE:
        raise Rejected(f"it is a {mv.tags.get(contract.TAG_FORMAT)} model, not a .tflite")
    if not is_sha256(sha):
        raise Rejected(f"the version has no valid {contract.TAG_SHA256!r} tag to verify against")
    declared = mv.tags.get(contract.TAG_MIN_RUNTIME)
    if declared and not runtime.supports(declared):
        raise Rejected(f"it needs runtime {declared}, this device has {runtime.label} (≈ TFLite {runtime.tf_equivalent})")


def _check_sample_shape(bundle: Path, input_shape_tag: str | None) -> None:
    """The sample's images have the shape the version says its model takes (from the .npy header, nothing loaded)."""
    images = check_sample_header(bundle)
    if not input_shape_tag:
        return
    try:
        declared = tuple(int(d) for d in input_shape_tag.split("x"))
    except ValueError:
        raise BundleError(f"the version's {contract.TAG_INPUT_SHAPE} tag {input_shape_tag[:40]!r} is not NxHxWxC") from None
    if images[1:] != declared[1:]:
        raise BundleError(f"sample images are {'x'.join(map(str, images[1:]))}, the version says its model takes "
                          f"{'x'.join(map(str, declared[1:]))}")


def _digests(bundle: Path) -> dict[str, str]:
    return {path.name: sha256_file(path) for path in sorted(bundle.iterdir()) if path.is_file()}
