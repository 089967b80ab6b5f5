"""Find the TFLite runtime installed on this device and say what it can run.

``ai-edge-litert`` (LiteRT) is preferred, ``tflite-runtime`` accepted. Models record
their minimum runtime as a TensorFlow version; LiteRT numbers its releases on its
own scale, so each LiteRT line is mapped to the TensorFlow release it was cut from.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

# LiteRT major.minor -> the TensorFlow Lite version its kernels match (conservative).
_LITERT_TF_EQUIVALENT = {1: "2.18.0", 2: "2.20.0"}

# Package -> its interpreter module, in order of preference.
_CANDIDATES = {
    "ai-edge-litert": "ai_edge_litert.interpreter",
    "tflite-runtime": "tflite_runtime.interpreter",
}
RUNTIME_PACKAGES = tuple(_CANDIDATES)

# An empty TFLite model (one subgraph, no tensors, no operators), written with the TFLite
# schema's object API. Creating an interpreter from it makes the runtime's native code
# import NumPy's C API: the step where a runtime built for another NumPy fails.
_PROBE_MODEL = bytes.fromhex(
    "1800000054464c3300000e00140010000c000800000004000e000000100000001c00000050000000"
    "030000000100000008000000040004000400000001000000100000000c00140010000c0008000400"
    "0c000000100000001000000010000000100000000000000000000000000000000000000000000000"
)

# What a module built against NumPy 1.x says when it meets NumPy 2 (the runtime itself
# only raises "returned a result with an exception set").
_NUMPY_ABI_SIGNS = ("_ARRAY_API", "numpy.core.multiarray failed to import", "compiled using NumPy 1.x")


class RuntimeMissingError(RuntimeError):
    """No usable TFLite runtime is installed."""


class RuntimeIncompatibleError(RuntimeMissingError):
    """A runtime is installed but cannot run here (for example tflite-runtime 2.14 with NumPy 2)."""


@dataclass(frozen=True)
class Runtime:
    """A TFLite runtime: its package, version and the TensorFlow version it matches."""

    package: str
    version: str
    tf_equivalent: str
    interpreter_class: Callable[..., Any]

    def interpreter(self, model_path: str, threads: int | None = None) -> Any:
        try:
            return self.interpreter_class(model_path=model_path, num_threads=threads)
        except (SystemError, ImportError, AttributeError) as exc:
            if numpy_abi_mismatch(exc):
                raise incompatible(self.package, self.version, exc) from exc
            raise

    def check(self) -> None:
        """Create an interpreter from an empty model; RuntimeIncompatibleError if that fails here."""
        try:
            with quiet_native_stderr():
                self.interpreter_class(model_content=_PROBE_MODEL).allocate_tensors()
        except Exception as exc:  # noqa: BLE001 - whatever the native code raises means: unusable
            raise incompatible(self.package, self.version, exc) from exc

    def supports(self, min_runtime_version: str | None) -> bool:
        """Whether a model with this recorded minimum runtime may run here."""
        if not min_runtime_version:
            return True
        return parse_version(min_runtime_version) <= parse_version(self.tf_equivalent)

    @property
    def label(self) -> str:
        return f"{self.package} {self.version}"


def parse_version(text: str) -> tuple[int, ...]:
    """'2.17.0' -> (2, 17, 0); non-numeric suffixes are ignored."""
    parts = []
    for piece in text.strip().split("."):
        match = re.match(r"\d+", piece)
        if not match:
            break
        parts.append(int(match.group()))
        if match.end() < len(piece):  # '0rc1': a pre-release suffix ends the number
            break
    while len(parts) < 3:
        parts.append(0)
    return tuple(parts)


def tf_equivalent(package: str, version: str) -> str:
    if package == "ai-edge-litert":
        major = parse_version(version)[0]
        return _LITERT_TF_EQUIVALENT.get(major, max(_LITERT_TF_EQUIVALENT.values(), key=parse_version))
    return version


def find_runtime(preferred: str | None = None) -> Runtime:
    """The first usable installed runtime (or the one named by ``preferred`` / $EDGEQ_RUNTIME).

    Each candidate is imported and checked with an empty model, so a runtime that is
    installed but cannot run (a NumPy ABI mismatch) is reported here, in one line with
    the fix, and not later as a failed inference.
    """
    preferred = preferred or os.environ.get("EDGEQ_RUNTIME") or None
    tried: list[str] = []
    broken: list[RuntimeIncompatibleError] = []
    for package in RUNTIME_PACKAGES:
        if preferred and package != preferred:
            continue
        try:
            runtime = load_runtime(package)
        except RuntimeIncompatibleError as exc:
            broken.append(exc)
            continue
        except ImportError as exc:
            tried.append(f"{package} ({exc})")
            continue
        return runtime
    if broken:
        raise broken[0]
    wanted = preferred or "ai-edge-litert or tflite-runtime"
    raise RuntimeMissingError(
        f"no TFLite runtime found ({wanted}); install one: {install_hint(preferred)}"
        + (f" [tried: {'; '.join(tried)}]" if tried else "")
    )


def load_runtime(package: str) -> Runtime:
    """Import ``package``'s interpreter and check it: ImportError if it is not installed,
    RuntimeIncompatibleError if it is but cannot run here."""
    try:
        module = importlib.import_module(_CANDIDATES[package])
    except ImportError as exc:
        if numpy_abi_mismatch(exc):
            raise incompatible(package, package_version(package), exc) from exc
        raise
    except Exception as exc:  # noqa: BLE001 - a native module failing while it loads
        raise incompatible(package, package_version(package), exc) from exc
    version = package_version(package)
    runtime = Runtime(package, version, tf_equivalent(package, version), module.Interpreter)
    runtime.check()
    return runtime


def package_version(package: str) -> str:
    """The installed version of ``package``, or 'unknown' where it has no metadata."""
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def numpy_abi_mismatch(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is a module built for NumPy 1.x meeting NumPy 2."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if any(sign in str(current) for sign in _NUMPY_ABI_SIGNS):
            return True
        current = current.__cause__ or current.__context__
    return False


def incompatible(package: str, version: str, exc: BaseException) -> RuntimeIncompatibleError:
    """One line saying why an installed runtime cannot run here, and what to do."""
    if numpy_abi_mismatch(exc):
        return RuntimeIncompatibleError(
            f"{package} {version} was built for NumPy 1.x but NumPy {package_version('numpy')} is installed "
            f'(_ARRAY_API not found); fix: pip install "numpy<2" (the edgeq[tflite-runtime] extra pins it)'
        )
    first = str(exc).splitlines()[0] if str(exc) else ""
    return RuntimeIncompatibleError(
        f"{package} {version} is installed but cannot create an interpreter here "
        f"({type(exc).__name__}: {first}); reinstall it, or install the other runtime: {install_hint()}"
    )


def install_hint(package: str | None = None, machine: str | None = None) -> str:
    """The install command that fits this machine (README: 'On a Raspberry Pi: install')."""
    machine = machine or platform.machine()
    tflite = 'pip install "tflite-runtime==2.14.0" "numpy<2" (Python 3.8-3.11; the edgeq[tflite-runtime] extra)'
    if machine.startswith("armv"):
        return ("32-bit ARM has no LiteRT wheels: apt install python3-numpy python3-cffi, "
                f"a venv made with --system-site-packages, then {tflite}")
    if package == "tflite-runtime":
        return tflite
    return "pip install ai-edge-litert (the edgeq[edge] extra)"


@contextmanager
def quiet_native_stderr() -> Iterator[None]:
    """Silence what the runtime's C++ code prints on fd 2 (an INFO line about XNNPACK).

    A cron run should print one line. Real load errors still surface: the runtime
    raises them as Python exceptions carrying the message.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stderr.flush()
    saved, devnull = os.dup(fd), os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)
        os.close(devnull)
