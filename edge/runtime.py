"""Find the TFLite runtime installed on this device and say what it can run.

``ai-edge-litert`` (LiteRT) is preferred, ``tflite-runtime`` accepted. Models record
their minimum runtime as a TensorFlow version; LiteRT numbers its releases on its
own scale, so each LiteRT line is mapped to the TensorFlow release it was cut from.
"""
from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import sys
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

# LiteRT major.minor -> the TensorFlow Lite version its kernels match (conservative).
_LITERT_TF_EQUIVALENT = {1: "2.18.0", 2: "2.20.0"}

_CANDIDATES = (
    ("ai-edge-litert", "ai_edge_litert.interpreter"),
    ("tflite-runtime", "tflite_runtime.interpreter"),
)


class RuntimeMissingError(RuntimeError):
    """No TFLite runtime is installed."""


@dataclass(frozen=True)
class Runtime:
    """A TFLite runtime: its package, version and the TensorFlow version it matches."""

    package: str
    version: str
    tf_equivalent: str
    interpreter_class: Callable[..., Any]

    def interpreter(self, model_path: str, threads: int | None = None) -> Any:
        return self.interpreter_class(model_path=model_path, num_threads=threads)

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
    """The first installed runtime (or the one named by ``preferred`` / $EDGEQ_RUNTIME)."""
    preferred = preferred or os.environ.get("EDGEQ_RUNTIME") or None
    tried = []
    for package, module_name in _CANDIDATES:
        if preferred and package != preferred:
            continue
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            tried.append(f"{package} ({exc})")
            continue
        version = importlib.metadata.version(package)
        return Runtime(package, version, tf_equivalent(package, version), module.Interpreter)
    wanted = preferred or "ai-edge-litert or tflite-runtime"
    raise RuntimeMissingError(
        f"no TFLite runtime found ({wanted}); install one: pip install ai-edge-litert"
        + (f" [tried: {'; '.join(tried)}]" if tried else "")
    )


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
