"""An exclusive file lock so overlapping cron runs never collide, and a stuck run cannot block the device for good.

The kernel releases a ``flock`` when its holder dies, so a run that was killed never
leaves the lock held; its pid, left in the file, is noticed and logged. A holder that is
alive but has held the lock longer than a run may take (``overrun_s``: the network
deadline, the candidate checks and the hook, added up) is an edgeq-pull stuck somewhere:
the next run kills it and takes over, with a log line.

Killing is only for what is provably that run: the holder records in the lock its pid,
its start time (``/proc/<pid>/stat``, in clock ticks since boot), the state dir and a
digest of its command line. A process is killed only when all four still match: a pid
reused by another process (a ``tail -f`` of the puller's log, a backup) starts later or
runs another command line, and a bare pid (an older puller's record) proves nothing.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

log = logging.getLogger("edgeq-pull")

_TAKEOVER_WAIT_S = 5.0
_RECORD_BYTES = 4096


@dataclass(frozen=True)
class Holder:
    """Who wrote the lock's record: enough to tell that run from any later process under its pid."""

    pid: int
    start_ticks: int | None = None  # None: a bare pid (an older puller), which proves nothing
    state_dir: str = ""
    cmdline_sha256: str = ""


class LockBusy(RuntimeError):
    """Another process holds the lock."""


@contextmanager
def exclusive_lock(path: Path, wait_s: float = 0.0, overrun_s: float | None = None) -> Iterator[None]:
    """Hold ``path`` locked; wait up to ``wait_s`` seconds (taking over from an overrun holder), then raise LockBusy."""
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    deadline = time.monotonic() + wait_s
    took_over = False
    try:
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                holder = _holder(fd)
                if not took_over and overrun_s is not None and holder and _overran(holder, _state_dir(path), overrun_s):
                    log.warning("run pid %d has held %s for more than %.0f s (the most a run may take): "
                                "stopping it and taking over", holder.pid, path, overrun_s)
                    _kill(holder)
                    took_over = True
                    deadline = max(deadline, time.monotonic() + _TAKEOVER_WAIT_S)
                if time.monotonic() >= deadline:
                    raise LockBusy(f"another puller holds {path}" + (f" (pid {holder.pid})" if holder else "")) from None
                time.sleep(0.1)
        left = _holder(fd)
        if left and left.pid != os.getpid() and not _alive(left.pid):
            log.warning("took over %s from run pid %d, which ended without releasing it (killed or crashed)",
                        path, left.pid)
        os.ftruncate(fd, 0)
        os.pwrite(fd, _own_record(path), 0)
        yield
        os.ftruncate(fd, 0)  # released cleanly: the next run finds no pid
    finally:
        os.close(fd)


def _holder(fd: int) -> Holder | None:
    """The lock's record: a run's JSON line, or an older puller's bare pid; None for anything else."""
    try:
        text = os.pread(fd, _RECORD_BYTES, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    if text.isdigit():
        return Holder(int(text)) if 0 < int(text) < 1 << 22 else None
    try:
        data = json.loads(text)
        holder = Holder(data["pid"], data["start_ticks"], data["state_dir"], data["cmdline_sha256"])
    except (ValueError, TypeError, KeyError, RecursionError):
        return None
    sound = (type(holder.pid) is int and 0 < holder.pid < 1 << 22 and type(holder.start_ticks) is int
             and isinstance(holder.state_dir, str) and isinstance(holder.cmdline_sha256, str))
    return holder if sound else None


def _own_record(path: Path) -> bytes:
    """What this run writes into the lock it holds: pid, start time, state dir, command line digest."""
    pid = os.getpid()
    start, cmdline = _identity(pid) or (None, "")
    record = {"pid": pid, "start_ticks": start, "state_dir": _state_dir(path), "cmdline_sha256": cmdline}
    return json.dumps(record).encode()


def _state_dir(lock_path: Path) -> str:
    return str(Path(lock_path).resolve().parent)


def _identity(pid: int) -> tuple[int, str] | None:
    """``pid``'s start time (clock ticks after boot) and command line digest, or None when it is gone."""
    try:
        start = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, IndexError):
        return None
    return start, hashlib.sha256(cmdline).hexdigest()


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _overran(holder: Holder, state_dir: str, overrun_s: float) -> bool:
    """Whether ``holder`` is provably the run that wrote the record, on this state dir, and older than ``overrun_s``.

    Its age by the kernel's clock (a wrong wall clock cannot fool it).
    """
    if holder.start_ticks is None or holder.state_dir != state_dir:
        return False
    if _identity(holder.pid) != (holder.start_ticks, holder.cmdline_sha256):
        return False  # another process under that pid, or one running another command: never killed
    try:
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    return uptime - holder.start_ticks / os.sysconf("SC_CLK_TCK") > overrun_s


def _kill(holder: Holder) -> None:
    """SIGKILL ``holder`` through a pidfd checked after opening it, so a pid reused meanwhile is never hit."""
    try:
        pidfd = os.pidfd_open(holder.pid)
    except (AttributeError, OSError):  # gone, or a kernel before 5.3: the plain kill right after the check
        pidfd = None
    try:
        if _identity(holder.pid) != (holder.start_ticks, holder.cmdline_sha256):
            return
        if pidfd is None:
            os.kill(holder.pid, signal.SIGKILL)
        else:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    finally:
        if pidfd is not None:
            os.close(pidfd)
