"""An exclusive file lock so overlapping cron runs never collide, and a stuck run cannot block the device for good.

The kernel releases a ``flock`` when its holder dies, so a run that was killed never
leaves the lock held; its pid, left in the file, is noticed and logged. A holder that is
alive but has held the lock longer than a run may take (``overrun_s``: the network
deadline, the candidate checks and the hook, added up) is an edgeq-pull stuck somewhere:
the next run kills it and takes over, with a log line.
"""
from __future__ import annotations

import fcntl
import logging
import os
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

log = logging.getLogger("edgeq-pull")

_TAKEOVER_WAIT_S = 5.0


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
                if not took_over and overrun_s is not None and holder and _overran(holder, overrun_s):
                    log.warning("run pid %d has held %s for more than %.0f s (the most a run may take): "
                                "stopping it and taking over", holder, path, overrun_s)
                    _kill(holder)
                    took_over = True
                    deadline = max(deadline, time.monotonic() + _TAKEOVER_WAIT_S)
                if time.monotonic() >= deadline:
                    raise LockBusy(f"another puller holds {path}" + (f" (pid {holder})" if holder else "")) from None
                time.sleep(0.1)
        left = _holder(fd)
        if left and left != os.getpid() and not _alive(left):
            log.warning("took over %s from run pid %d, which ended without releasing it (killed or crashed)", path, left)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
        os.ftruncate(fd, 0)  # released cleanly: the next run finds no pid
    finally:
        os.close(fd)


def _holder(fd: int) -> int | None:
    try:
        text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() and int(text) > 0 else None


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _overran(pid: int, overrun_s: float) -> bool:
    """Whether ``pid`` is an edgeq-pull older than ``overrun_s``, by the kernel's clock (a wrong wall clock cannot fool it)."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        start_ticks = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    if b"edgeq-pull" not in cmdline and b"edge.cli" not in cmdline and b"edge/cli" not in cmdline:
        return False  # never kill what is not a puller (a reused pid)
    age = uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    return age > overrun_s


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
