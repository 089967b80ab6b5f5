"""Run an untrusted candidate model in a child process bounded in time and memory.

The puller never loads a model from the registry into its own process: a flatbuffer
that crashes the runtime, a model that never answers or a sample that expands to
gigabytes ends the child, not the puller, and becomes a refusal with a reason.

Memory is bounded twice: the child's resident set is watched and the child killed the
moment it passes the limit (the reason names the limit), and RLIMIT_DATA stops a single
allocation far beyond it that the watch could not see in time.
"""
from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import edge
from edge.benchmark import BenchmarkResult, LatencyStats
from edge.candidate import EXIT_MEMORY, EXIT_RUNTIME
from edge.proc_status import status_kb

DEFAULT_TIMEOUT_S = 300.0
DEFAULT_MAX_RSS_MB = 512.0
_POLL_S = 0.02
_RESULT_CAP_BYTES = 1 << 20
_STDERR_TAIL_BYTES = 2048
# Address space the child may map beyond its RSS limit before an allocation fails outright:
# interpreters reserve more than they touch (thread stacks, arenas).
_DATA_HEADROOM_MB = 1024


class CandidateRefused(Exception):
    """The candidate crashed, hung, ate memory or failed its own checks: the version's fault."""


class SandboxError(Exception):
    """The check could not run on this device (no usable runtime, cannot start a process): the device's fault."""


@dataclass(frozen=True)
class SandboxLimits:
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_rss_mb: float = DEFAULT_MAX_RSS_MB


@dataclass(frozen=True)
class CandidateJob:
    bundle: Path
    labels: int  # classes named by labels.txt; the model must have as many outputs
    runtime: str | None = None
    threads: int | None = None
    warmup: int = 10
    runs: int = 100


def run_candidate(job: CandidateJob, limits: SandboxLimits, workdir: Path) -> BenchmarkResult:
    """Load, check and benchmark ``job.bundle`` in a bounded child; the result or CandidateRefused."""
    with tempfile.TemporaryDirectory(prefix="check-", dir=workdir) as tmp:
        job_path, result_path, err_path = Path(tmp, "job.json"), Path(tmp, "result.json"), Path(tmp, "stderr.txt")
        job_path.write_text(json.dumps({"bundle": str(job.bundle), "labels": job.labels, "runtime": job.runtime,
                                        "threads": job.threads, "warmup": job.warmup, "runs": job.runs}))
        with open(err_path, "wb") as err:
            code, killed_for = _supervise(
                [sys.executable, "-m", "edge.candidate", str(job_path), str(result_path)], err, limits)
        if killed_for:
            raise CandidateRefused(killed_for)
        if code < 0:
            raise CandidateRefused(f"the runtime crashed: {_signal_name(-code)}")
        if code == EXIT_MEMORY:
            raise CandidateRefused(f"over {limits.max_rss_mb:g} MB (an allocation failed; --max-rss-mb)")
        data = _read_result(result_path)
        if code == EXIT_RUNTIME:
            raise SandboxError(str(data.get("device_error", "no usable TFLite runtime in the check's process")))
        if code != 0:
            raise CandidateRefused(f"the check ended with exit {code}: {_tail(err_path)}")
        if "refused" in data:
            raise CandidateRefused(str(data["refused"]))
        try:
            return _result_from(data["result"])
        except (KeyError, TypeError, ValueError) as exc:
            raise CandidateRefused(f"the check's result is malformed ({exc})") from exc


def _supervise(argv: list[str], err: object, limits: SandboxLimits) -> tuple[int, str | None]:
    """Run ``argv``; kill its process group when it outlives the time or passes the memory limit."""
    data_limit = int((limits.max_rss_mb + _DATA_HEADROOM_MB) * (1 << 20))

    def limit_memory() -> None:
        resource.setrlimit(resource.RLIMIT_DATA, (data_limit, data_limit))
        _die_with_parent()

    env = {**os.environ, "PYTHONPATH": _package_root() + os.pathsep + os.environ.get("PYTHONPATH", "")}
    try:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                start_new_session=True, preexec_fn=limit_memory, env=env)
    except OSError as exc:
        raise SandboxError(f"cannot start the check's process: {exc}") from exc
    end = time.monotonic() + limits.timeout_s
    killed_for = None
    while proc.poll() is None:
        rss = _rss_mb(proc.pid)
        if rss is not None and rss > limits.max_rss_mb:
            killed_for = f"over {limits.max_rss_mb:g} MB (resident {rss:.0f} MB; --max-rss-mb)"
        elif time.monotonic() > end:
            killed_for = f"no answer in {limits.timeout_s:g} s (--check-timeout)"
        if killed_for:
            _kill_group(proc)
            break
        try:
            proc.wait(_POLL_S)
        except subprocess.TimeoutExpired:
            pass
    return proc.wait(), killed_for


def _die_with_parent() -> None:
    """Linux: the child is killed when the puller dies (killed for overrunning), never left running alone."""
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


def _rss_mb(pid: int) -> float | None:
    kb = status_kb(pid, "VmRSS")
    return None if kb is None else kb / 1024


def _package_root() -> str:
    """The directory holding the ``edge`` package this puller runs from, so the child runs the same code."""
    return str(Path(edge.__file__).resolve().parent.parent)


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _read_result(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            data = json.loads(fh.read(_RESULT_CAP_BYTES))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _tail(path: Path) -> str:
    try:
        with open(path, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - _STDERR_TAIL_BYTES))
            lines = fh.read().decode("utf-8", "replace").strip().splitlines()
    except OSError:
        return "no output"
    return lines[-1][:300] if lines else "no output"


def _result_from(data: dict) -> BenchmarkResult:
    latency = LatencyStats(**{k: float(v) if k != "runs" else int(v) for k, v in data["latency"].items()})
    accuracy = data.get("accuracy")
    return BenchmarkResult(latency=latency, accuracy=None if accuracy is None else float(accuracy),
                           sample_size=int(data["sample_size"]), peak_rss_mb=float(data["peak_rss_mb"]),
                           threads=data.get("threads"))
