"""What makes a device's latency figures comparable: governor, frequency, temperature, throttling.

Read once before and once after the timed runs; only files under /sys and, on a
Raspberry Pi, ``vcgencmd get_throttled``. Anything unreadable is left out (tags say
"unknown"), never an error: a missing sensor must not stop a benchmark.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from edge import contract

SYS_ROOT = Path("/sys")
_CPUFREQ = Path("devices/system/cpu/cpu0/cpufreq")
_THERMAL = Path("class/thermal/thermal_zone0/temp")
# x86 kernels count thermal throttling events per core and package; a count that grows during the run means throttled.
_THROTTLE_COUNTS = (Path("devices/system/cpu/cpu0/thermal_throttle/core_throttle_count"),
                    Path("devices/system/cpu/cpu0/thermal_throttle/package_throttle_count"))
VCGENCMD_TIMEOUT_S = 2.0

# vcgencmd get_throttled: bits 0-3 hold now, bits 16-19 have happened since boot.
_PI_FLAGS = {0: "under-voltage", 1: "arm frequency capped", 2: "throttled", 3: "soft temperature limit"}
_NOW_MASK = 0xF
_SINCE_BOOT_SHIFT = 16

YES, NO, UNKNOWN = contract.THROTTLED_YES, contract.THROTTLED_NO, contract.THROTTLED_UNKNOWN


@dataclass(frozen=True)
class Reading:
    """One look at the machine's state (None where it could not be read)."""

    governor: str | None
    freq_mhz: float | None
    temp_c: float | None
    pi_throttled: int | None  # the raw vcgencmd get_throttled value
    throttle_count: int | None


@dataclass(frozen=True)
class Provenance:
    """Plain contract names (no device prefix): the puller wraps them with ``contract.device_key``."""

    metrics: dict[str, float]
    tags: dict[str, str]

    @property
    def throttled(self) -> str:
        return self.tags[contract.D_THROTTLED]


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text().strip() or None
    except (OSError, UnicodeDecodeError):
        return None


def _read_number(path: Path) -> float | None:
    text = _read_text(path)
    try:
        return float(text) if text is not None else None
    except ValueError:
        return None


def pi_throttled_flags(vcgencmd: str = "vcgencmd") -> int | None:
    """The value of ``vcgencmd get_throttled`` (``throttled=0x50005``), or None off a Pi or on any failure."""
    exe = shutil.which(vcgencmd)
    if exe is None:
        return None
    try:
        proc = subprocess.run([exe, "get_throttled"], capture_output=True, text=True, timeout=VCGENCMD_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    key, _, value = proc.stdout.strip().partition("=")
    if proc.returncode != 0 or key != "throttled":
        return None
    try:
        return int(value, 16)
    except ValueError:
        return None


def describe_pi_flags(value: int) -> str:
    """``0x50005: under-voltage, throttled; since boot: under-voltage, throttled``."""
    now = [name for bit, name in _PI_FLAGS.items() if value & (1 << bit)]
    past = [name for bit, name in _PI_FLAGS.items() if value & (1 << (bit + _SINCE_BOOT_SHIFT))]
    parts = [", ".join(now) or "none now"] + ([f"since boot: {', '.join(past)}"] if past else [])
    return f"{value:#x}: " + "; ".join(parts)


def read(root: Path = SYS_ROOT, vcgencmd: str = "vcgencmd") -> Reading:
    """Read governor, current frequency, SoC temperature and throttling state."""
    khz = _read_number(root / _CPUFREQ / "scaling_cur_freq")
    millideg = _read_number(root / _THERMAL)
    counts = [_read_number(root / p) for p in _THROTTLE_COUNTS]
    known = [c for c in counts if c is not None]
    return Reading(
        governor=_read_text(root / _CPUFREQ / "scaling_governor"),
        freq_mhz=None if khz is None else khz / 1000.0,
        temp_c=None if millideg is None else millideg / 1000.0,
        pi_throttled=pi_throttled_flags(vcgencmd),
        throttle_count=int(sum(known)) if known else None,
    )


def before(root: Path = SYS_ROOT, vcgencmd: str = "vcgencmd") -> Reading:
    """Call right before the warm-up."""
    return read(root, vcgencmd)


def throttled_during(start: Reading, end: Reading) -> str:
    """"yes" when throttling held at either end or began in between, "no" when a source says not, else "unknown"."""
    verdicts = []
    if start.pi_throttled is not None and end.pi_throttled is not None:
        now = (start.pi_throttled | end.pi_throttled) & _NOW_MASK
        began = (end.pi_throttled & ~start.pi_throttled) >> _SINCE_BOOT_SHIFT
        verdicts.append(bool(now or began))
    if start.throttle_count is not None and end.throttle_count is not None:
        verdicts.append(end.throttle_count > start.throttle_count)
    if not verdicts:
        return UNKNOWN
    return YES if any(verdicts) else NO


def after(start: Reading, *, threads: int | None, runtime: str, runtime_version: str, delegate: str,
          root: Path = SYS_ROOT, vcgencmd: str = "vcgencmd") -> Provenance:
    """Call right after the timed runs; ``runtime``, ``delegate`` and ``threads`` are what the caller used."""
    end = read(root, vcgencmd)
    metrics: dict[str, float] = {}
    # The frequency right after the timed runs is the one they ran at; before them an idle CPU may be clocked down.
    freq = end.freq_mhz if end.freq_mhz is not None else start.freq_mhz
    if freq is not None:
        metrics[contract.D_CPU_FREQ_MHZ] = freq
    if start.temp_c is not None:
        metrics[contract.D_TEMP_BEFORE_C] = start.temp_c
    if end.temp_c is not None:
        metrics[contract.D_TEMP_AFTER_C] = end.temp_c
    flags = end.pi_throttled if end.pi_throttled is not None else start.pi_throttled
    tags = {
        contract.D_THREADS: str(threads) if threads else "default",
        contract.D_RUNTIME: runtime,
        contract.D_RUNTIME_VERSION: runtime_version,
        contract.D_DELEGATE: delegate,
        contract.D_GOVERNOR: end.governor or start.governor or UNKNOWN,
        contract.D_THROTTLED: throttled_during(start, end),
        contract.D_THROTTLE_FLAGS: describe_pi_flags(flags) if flags is not None else UNKNOWN,
    }
    return Provenance(metrics, tags)
