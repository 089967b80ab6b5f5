"""What this device is: hostname and CPU model, for the tags a report carries."""
from __future__ import annotations

import platform
import socket
from pathlib import Path


def hostname() -> str:
    return socket.gethostname()


def cpu_model() -> str:
    """'Raspberry Pi 4 Model B Rev 1.4' on a Pi, the CPU's model name elsewhere."""
    try:
        text = Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        text = ""
    found = {}
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if sep and key.strip() in ("Model", "model name", "Hardware") and value.strip():
            found.setdefault(key.strip(), value.strip())
    for key in ("Model", "model name", "Hardware"):
        if key in found:
            return found[key]
    return platform.processor() or platform.machine()
