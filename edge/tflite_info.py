"""Read what a ``.tflite`` file declares about itself, without TensorFlow.

A TFLite model is a FlatBuffer; this module walks just the few tables it needs
(operator codes, metadata, buffers) so the edge device and the registry tools can
learn a model's minimum runtime version and the ops it uses before loading it.
"""
from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from edge.tflite_ops import BUILTIN_OPERATORS

# Field indices from tensorflow/lite/schema/schema.fbs.
_MODEL_OPERATOR_CODES = 1
_MODEL_BUFFERS = 4
_MODEL_METADATA = 6
_OPCODE_DEPRECATED_BUILTIN = 0
_OPCODE_CUSTOM = 1
_OPCODE_VERSION = 2
_OPCODE_BUILTIN = 3
_METADATA_NAME = 0
_METADATA_BUFFER = 1
_BUFFER_DATA = 0
_BUFFER_OFFSET = 1
_BUFFER_SIZE = 2
_CUSTOM_OP = 32
_PLACEHOLDER_FOR_GREATER_OP_CODES = 127


class TFLiteFormatError(ValueError):
    """The bytes are not a readable TFLite FlatBuffer."""


@dataclass(frozen=True)
class TFLiteInfo:
    """What a TFLite model declares: its ops (name, version) and minimum runtime."""

    ops: tuple[tuple[str, int], ...]
    min_runtime_version: str | None

    @property
    def ops_text(self) -> str:
        """Ops as ``NAME:version`` joined by commas, for a tag."""
        return ",".join(f"{name}:{version}" for name, version in self.ops)


class _Table:
    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf = buf
        self.pos = pos
        vtable = pos - _i32(buf, pos)
        self.vtable = vtable
        self.vtable_len = _u16(buf, vtable)

    def _field(self, index: int) -> int:
        slot = 4 + 2 * index
        if slot >= self.vtable_len:
            return 0
        return _u16(self.buf, self.vtable + slot)

    def scalar(self, index: int, fmt: str, default: int = 0) -> int:
        off = self._field(index)
        if not off:
            return default
        return struct.unpack_from("<" + fmt, self.buf, self.pos + off)[0]

    def _indirect(self, index: int) -> int | None:
        off = self._field(index)
        if not off:
            return None
        at = self.pos + off
        return at + _u32(self.buf, at)

    def string(self, index: int) -> str | None:
        at = self._indirect(index)
        if at is None:
            return None
        n = _u32(self.buf, at)
        return self.buf[at + 4 : at + 4 + n].decode("utf-8", errors="replace")

    def vector(self, index: int) -> tuple[int, int]:
        """(start, length) of a vector field; (0, 0) when absent."""
        at = self._indirect(index)
        if at is None:
            return 0, 0
        return at + 4, _u32(self.buf, at)

    def tables(self, index: int) -> list["_Table"]:
        start, n = self.vector(index)
        out = []
        for i in range(n):
            at = start + 4 * i
            out.append(_Table(self.buf, at + _u32(self.buf, at)))
        return out


def _u16(buf: bytes, at: int) -> int:
    return struct.unpack_from("<H", buf, at)[0]


def _u32(buf: bytes, at: int) -> int:
    return struct.unpack_from("<I", buf, at)[0]


def _i32(buf: bytes, at: int) -> int:
    return struct.unpack_from("<i", buf, at)[0]


def read_info(data: bytes) -> TFLiteInfo:
    """Parse the op list and ``min_runtime_version`` metadata from model bytes."""
    if len(data) < 8 or data[4:8] != b"TFL3":
        raise TFLiteFormatError("not a TFLite model (missing the TFL3 identifier)")
    try:
        model = _Table(data, _u32(data, 0))
        names = BUILTIN_OPERATORS
        ops = []
        for code in model.tables(_MODEL_OPERATOR_CODES):
            builtin = max(
                code.scalar(_OPCODE_DEPRECATED_BUILTIN, "b"),
                code.scalar(_OPCODE_BUILTIN, "i"),
            )
            if builtin == _CUSTOM_OP:
                name = "CUSTOM:" + (code.string(_OPCODE_CUSTOM) or "?")
            else:
                name = names.get(builtin, f"BUILTIN_{builtin}")
            ops.append((name, code.scalar(_OPCODE_VERSION, "i", 1)))
        buffers = model.tables(_MODEL_BUFFERS)
        min_runtime = None
        for meta in model.tables(_MODEL_METADATA):
            if meta.string(_METADATA_NAME) != "min_runtime_version":
                continue
            buffer = buffers[meta.scalar(_METADATA_BUFFER, "I")]
            start, n = buffer.vector(_BUFFER_DATA)
            raw = data[start : start + n]
            if not n and buffer.scalar(_BUFFER_OFFSET, "Q"):
                offset = buffer.scalar(_BUFFER_OFFSET, "Q")
                raw = data[offset : offset + buffer.scalar(_BUFFER_SIZE, "Q")]
            min_runtime = raw.split(b"\0", 1)[0].decode("ascii", errors="replace") or None
    except (struct.error, IndexError) as exc:
        raise TFLiteFormatError(f"truncated or corrupt TFLite model ({exc})") from exc
    return TFLiteInfo(ops=tuple(sorted(set(ops))), min_runtime_version=min_runtime)


def read_info_file(path: Path) -> TFLiteInfo:
    """`read_info` on a file."""
    return read_info(Path(path).read_bytes())
