"""``edgeq-pull doctor``: which runtime and NumPy this device has, and whether they fit."""
from __future__ import annotations

import platform
import sys
from dataclasses import dataclass

from edge.contract import ExitCode
from edge.runtime import (RUNTIME_PACKAGES, RuntimeIncompatibleError, RuntimeMissingError, find_runtime, install_hint,
                          load_runtime, package_version, tf_equivalent)

# Python versions with wheels on the package index, per runtime (tflite-runtime 2.14.0: cp38-cp311;
# ai-edge-litert 2.x: cp310-cp314, no armv7l wheels).
_WHEEL_PYTHONS = {"tflite-runtime": ((3, 8), (3, 11)), "ai-edge-litert": ((3, 10), (3, 14))}


@dataclass(frozen=True)
class RuntimeStatus:
    """One runtime package as found here: version None when it is not installed; problem None when usable."""

    package: str
    version: str | None
    tf_equivalent: str | None
    problem: str | None

    @property
    def text(self) -> str:
        if self.version is None:
            return f"{self.package}: not installed"
        label = f"{self.package} {self.version} (≈ TFLite {self.tf_equivalent})"
        return f"{label}: {self.problem}" if self.problem else label


@dataclass(frozen=True)
class Facts:
    """What this device runs models with; ``problem`` (with the fix) is None when it is usable."""

    edgeq: str
    system: str
    machine: str
    libc: str
    python: str
    executable: str
    numpy: str
    runtimes: tuple[RuntimeStatus, ...]
    chosen: RuntimeStatus | None
    problem: str | None

    @property
    def usable(self) -> bool:
        return self.problem is None

    def version_line(self) -> str:
        """One line for ``edgeq-pull --version``."""
        runtime = (f"{self.chosen.package} {self.chosen.version} (≈ TFLite {self.chosen.tf_equivalent})"
                   if self.chosen else "no usable TFLite runtime")
        return (f"edgeq-pull {self.edgeq}: {runtime}, NumPy {self.numpy}, Python {self.python}, "
                f"{self.system} {self.machine}")

    def lines(self) -> list[str]:
        rows = [
            ("edgeq", self.edgeq),
            ("platform", f"{self.system} {self.machine}" + (f" ({self.libc})" if self.libc else "")),
            ("python", f"{self.python} ({self.executable})"),
            ("numpy", self.numpy),
        ]
        for status in self.runtimes:
            mark = " <- used" if self.chosen and status.package == self.chosen.package else ""
            text = status.text.replace(f": {self.problem}", ": unusable (see verdict)") if self.problem else status.text
            rows.append(("runtime", text + mark))
        verdict = (f"ok: {self.chosen.package} {self.chosen.version} runs models here with NumPy {self.numpy}"
                   if self.usable and self.chosen else f"NOT USABLE: {self.problem}")
        rows.append(("verdict", verdict))
        return [f"{key:<9} {value}" for key, value in rows]


def gather(preferred: str | None = None) -> Facts:
    """Look at this device: every runtime package, NumPy, Python, and what ``edgeq-pull`` would use."""
    runtimes = tuple(_status(package) for package in RUNTIME_PACKAGES)
    chosen, problem = None, None
    try:
        runtime = find_runtime(preferred)
        chosen = next(s for s in runtimes if s.package == runtime.package)
    except RuntimeMissingError as exc:
        problem = str(exc) if isinstance(exc, RuntimeIncompatibleError) else _missing_advice(preferred)
    libc_name, libc_version = platform.libc_ver()
    return Facts(
        edgeq=package_version("edgeq"), system=platform.system(), machine=platform.machine(),
        libc=f"{libc_name} {libc_version}".strip(), python=platform.python_version(), executable=sys.executable,
        numpy=package_version("numpy"), runtimes=runtimes, chosen=chosen, problem=problem,
    )


def _status(package: str) -> RuntimeStatus:
    version = package_version(package)
    try:
        load_runtime(package)
    except RuntimeIncompatibleError as exc:
        return RuntimeStatus(package, version, tf_equivalent(package, version), str(exc))
    except ImportError as exc:
        if version == "unknown":
            return RuntimeStatus(package, None, None, None)
        return RuntimeStatus(package, version, tf_equivalent(package, version), f"installed but does not import ({exc})")
    return RuntimeStatus(package, version, tf_equivalent(package, version), None)


def _missing_advice(preferred: str | None) -> str:
    """No runtime at all: what to install, or why nothing installs on this Python and CPU."""
    machine, python = platform.machine(), sys.version_info[:2]
    missing = f"{preferred} is not installed" if preferred else "no TFLite runtime installed"
    # LiteRT has no 32-bit ARM wheels: there only tflite-runtime can be installed.
    usable = ["tflite-runtime"] if machine.startswith("armv") else [preferred] if preferred else list(RUNTIME_PACKAGES)
    fits = [p for p in usable if _WHEEL_PYTHONS[p][0] <= python <= _WHEEL_PYTHONS[p][1]]
    if not fits:
        have = ", ".join(f"{p}: Python {_dotted(_WHEEL_PYTHONS[p][0])}-{_dotted(_WHEEL_PYTHONS[p][1])}" for p in usable)
        return (f"{missing}, and no runtime that has {machine} wheels has them for Python {_dotted(python)} "
                f"({have}); use a Python those cover (Raspberry Pi OS bookworm's 3.11 fits)")
    return f"{missing}; install it: {install_hint(fits[0], machine)}"


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in version)


def main(preferred: str | None = None) -> int:
    """Print the facts; the exit code says whether edgeq-pull can run models here."""
    facts = gather(preferred)
    for line in facts.lines():
        print(line)
    return int(ExitCode.OK if facts.usable else ExitCode.BAD_CONFIG)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1] if len(sys.argv) > 1 else None))
