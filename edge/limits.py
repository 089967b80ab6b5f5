"""``--max-p99-ms`` in one spelling for the device's gate and the fleet's judge: ``MS``, ``all=MS`` or ``DEVICE=MS``."""
from __future__ import annotations

import math

from edge import contract

P99Limits = tuple[tuple[str, float], ...]  # (device id or contract.ALL_DEVICES, ms)


def parse_p99(specs: tuple[str, ...] | list[str]) -> P99Limits:
    """``["50", "pi-kitchen=80"]`` → ``(("all", 50.0), ("pi-kitchen", 80.0))``; ValueError names the bad one."""
    out: dict[str, float] = {}
    for spec in specs:
        who, sep, value = spec.rpartition("=") if "=" in spec else (contract.ALL_DEVICES, "=", spec)
        try:
            ms = float(value)
        except ValueError:
            ms = math.nan
        if not sep or not who.strip() or not ms > 0:
            raise ValueError(f"--max-p99-ms {spec!r}: expected MS, {contract.ALL_DEVICES}=MS or DEVICE=MS with MS > 0, "
                             f"e.g. {contract.ALL_DEVICES}=50")
        who = who.strip()
        out[who if who == contract.ALL_DEVICES else contract.sanitize_device_id(who)] = ms
    return tuple(out.items())


def p99_for(limits: P99Limits, device: str) -> tuple[float, str] | None:
    """(ms, whose limit it is) for ``device``: its own entry wins over the one for all devices."""
    table = dict(limits)
    for who in (contract.sanitize_device_id(device), contract.ALL_DEVICES):
        if who in table:
            return table[who], who
    return None
