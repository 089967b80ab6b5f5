"""What this device is: a stable id, hostname and CPU model, for the tags a report carries."""
from __future__ import annotations

import hashlib
import platform
import socket
from pathlib import Path

# Where a machine's identity lives, most durable first: a Pi's serial is burnt into the
# SoC; /etc/machine-id is made on first boot (the same on cloned SD cards, hence second).
_ID_SOURCES = (
    Path("/sys/firmware/devicetree/base/serial-number"),
    Path("/etc/machine-id"),
    Path("/var/lib/dbus/machine-id"),
)


def hostname() -> str:
    return socket.gethostname()


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def cpu_serial(cpuinfo: str) -> str | None:
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() == "Serial" and value.strip().strip("0"):
            return value.strip()
    return None


def stable_device_id(sources: tuple[Path, ...] = _ID_SOURCES, cpuinfo: str | None = None) -> str:
    """``edge-`` + 12 hex digits derived from the Pi's serial or the machine id.

    Hashed, so the serial itself is not published; stable across reboots, hostname
    changes and reinstalls of edgeq. Falls back to the hostname only where a machine
    has no identity at all.
    """
    serial = cpu_serial(_cpuinfo() if cpuinfo is None else cpuinfo)
    for candidate in [serial] + [_read_text(p) for p in sources]:
        if candidate and candidate.strip("\x00 \n0"):
            return "edge-" + hashlib.sha256(("edgeq:" + candidate.strip("\x00 \n")).encode()).hexdigest()[:12]
    return hostname()


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii", errors="replace")
    except OSError:
        return None


def cpu_model() -> str:
    """'Raspberry Pi 4 Model B Rev 1.4' on a Pi, the CPU's model name elsewhere."""
    found = {}
    for line in _cpuinfo().splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("Model", "model name", "Hardware") and value.strip():
            found.setdefault(key.strip(), value.strip())
    for key in ("Model", "model name", "Hardware"):
        if key in found:
            return found[key]
    return platform.processor() or platform.machine()
