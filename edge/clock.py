"""Time the fleet can trust: the device's clock checked against the server's ``Date`` header.

Every answer of the registry client passes its ``Date`` header here (edge/transport.py);
the skew (device minus server) of the latest answer corrects every stamp the device sends —
report timestamps, ``reported_at``, a heartbeat's end time — so a Pi whose clock runs in 2030,
or an hour behind, still reports the server's "now". A skew within the header's resolution
(``contract.CLOCK_TOLERANCE_S``) is left alone: an NTP-synchronised clock is better than the estimate.
"""
from __future__ import annotations

import os
import time
from email.utils import parsedate_to_datetime

from edge import contract


def device_time() -> float:
    """The device's own clock (seconds since the epoch), shifted by ``EDGEQ_CLOCK_OFFSET_S`` when set."""
    offset = os.environ.get(contract.ENV_CLOCK_OFFSET_S, "")
    try:
        return time.time() + (float(offset) if offset else 0.0)
    except ValueError:
        return time.time()


class ServerClock:
    """The server's time as seen from this device: the skew of the latest answer, and corrected stamps."""

    def __init__(self, tolerance_s: float = contract.CLOCK_TOLERANCE_S):
        self.tolerance_s = tolerance_s
        self.skew_s: float | None = None  # device minus server, seconds; None until a server answered

    def observe(self, date_header: str | None, received_at: float | None = None) -> None:
        """Record the skew from one answer's ``Date`` header; a missing or malformed header changes nothing."""
        if not date_header:
            return
        try:
            server = parsedate_to_datetime(date_header).timestamp()
        except (TypeError, ValueError, IndexError, OverflowError):
            return
        # The header is truncated to the second: the server's time lay somewhere in [server, server + 1).
        self.skew_s = (device_time() if received_at is None else received_at) - (server + 0.5)

    def correction_s(self) -> float:
        """Seconds to subtract from the device's clock: the skew, once it exceeds the tolerance."""
        skew = self.skew_s
        return skew if skew is not None and abs(skew) > self.tolerance_s else 0.0

    def now(self) -> float:
        return device_time() - self.correction_s()

    def now_ms(self) -> int:
        return int(self.now() * 1000)

    def iso_now(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.now()))

    def skew_tag(self) -> str | None:
        """The skew as ``contract.TAG_CLOCK_SKEW_S`` carries it (whole seconds, "0" within the tolerance)."""
        if self.skew_s is None:
            return None
        return str(round(self.correction_s()))


# The puller process talks to one server: one clock, fed by every answer of its registry client.
CLOCK = ServerClock()


def observe_date(date_header: str | None) -> None:
    CLOCK.observe(date_header)


def now_ms() -> int:
    """Server-corrected time in milliseconds (the device's own until a server answered)."""
    return CLOCK.now_ms()
