"""Which devices take a version that is being rolled out in stages: a stable hash of (device id, version).

The decision is the device's own and needs nothing but the version's tags, so a device outside the share costs
the server nothing more than the alias it resolves anyway. The fleet view and the rollout's status compute the
same hash to tell a device that is outside the share from one that is behind.
"""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from edge import contract

_BUCKETS = 10_000  # a share is honoured to 0.01 %


@dataclass(frozen=True)
class Share:
    """What a version's rollout tag says: ``percent`` of the devices may take it; the others keep ``fallback``."""

    percent: float
    fallback: str

    def outside(self, version: str) -> str:
        """How a device that keeps the fallback is described, on the device and in the fleet view alike."""
        return f"outside the {self.percent:g} % stage of v{version}"

    def encode(self) -> str:
        return json.dumps({"share": self.percent, "fallback": self.fallback}, sort_keys=True)


def parse(text: str) -> Share:
    """The rollout tag's value; ValueError naming what is wrong (the registry is untrusted input)."""
    try:
        data = json.loads(text)
    except ValueError:
        raise ValueError("not JSON") from None
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    percent, fallback = data.get("share"), data.get("fallback")
    if isinstance(percent, bool) or not isinstance(percent, (int, float)) or not math.isfinite(percent) \
            or not 0 <= percent <= 100:
        raise ValueError(f"share must be a percentage from 0 to 100, got {percent!r}")
    if not isinstance(fallback, str):
        raise ValueError(f"fallback must be a version number, got {fallback!r}")
    return Share(float(percent), contract.check_version_number(fallback))


def share_of(tags: dict[str, str], alias: str) -> Share | None:
    """The rollout share the version's ``tags`` set for ``alias``; None when every device takes it."""
    text = (tags or {}).get(contract.rollout_tag(alias))
    return None if text is None else parse(text)


def bucket(device_id: str, version: str) -> float:
    """Where ``device_id`` falls for ``version``, in [0, 100): stable, and independent between versions."""
    key = f"{contract.sanitize_device_id(device_id)}\0{contract.check_version_number(version)}".encode("utf-8")
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "big") % _BUCKETS / (_BUCKETS / 100)


def takes(device_id: str, version: str, percent: float) -> bool:
    """True when the device is inside a ``percent`` share of ``version``: a share that grows never drops a device."""
    return bucket(device_id, version) < percent
