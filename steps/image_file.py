"""One image file as RGB pixels: the single decoder that both the folder scan and training use."""
from __future__ import annotations

import io
import os
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

# Suffixes read as images; other files in a class folder are skipped and counted.
SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
# PIL's own decompression-bomb threshold (width × height): a larger image is refused before it is decoded.
MAX_PIXELS = 89_478_485

# Why a file cannot be used (the scan's report groups files by these).
UNREADABLE, TOO_LARGE, NOT_A_FILE = "unreadable", "too large", "not a file"
_HIGH_BIT_MODES = {"I;16": 8, "I;16B": 8, "I;16L": 8, "I;16N": 8, "I": 8}  # 16-bit greys: keep the top 8 bits


class BadImage(ValueError):
    """A file that cannot be used as an image; ``reason`` is one of UNREADABLE, TOO_LARGE, NOT_A_FILE."""

    def __init__(self, path: Path | str, reason: str, detail: str):
        super().__init__(f"{reason} image {path}: {detail}")
        self.path, self.reason, self.detail = Path(path), reason, detail


def regular_stat(path: Path | str) -> os.stat_result:
    """The file's status, if it is a regular file (through links); BadImage otherwise."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise BadImage(path, NOT_A_FILE, "a broken link" if os.path.islink(path) else "it no longer exists") from None
    except OSError as exc:
        raise BadImage(path, UNREADABLE, exc.strerror or str(exc)) from None
    if not stat.S_ISREG(st.st_mode):
        raise BadImage(path, NOT_A_FILE, "a folder" if stat.S_ISDIR(st.st_mode) else "a device, pipe or socket")
    return st


def read_bytes(path: Path | str) -> bytes:
    """The file's bytes, if it is a regular file that can be read; BadImage otherwise."""
    regular_stat(path)
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise BadImage(path, UNREADABLE, exc.strerror or str(exc)) from None


def decode(content: bytes, path: Path | str = "<bytes>") -> np.ndarray:
    """uint8 H×W×3: palette, 1-bit, grey, 16-bit grey, CMYK and alpha images converted explicitly to RGB."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(content)) as img:
                if img.width * img.height > MAX_PIXELS:
                    raise BadImage(path, TOO_LARGE, f"{img.width}×{img.height} pixels, over {MAX_PIXELS:,}; downscale it")
                return _rgb(img)
    except BadImage:
        raise
    except Image.DecompressionBombError:
        raise BadImage(path, TOO_LARGE, f"over {2 * MAX_PIXELS:,} pixels, a possible decompression bomb; downscale it") from None
    except UnidentifiedImageError:
        raise BadImage(path, UNREADABLE, "not an image in any format this decoder reads") from None
    except Exception as exc:  # noqa: BLE001 — Pillow raises many kinds (OSError, SyntaxError, struct.error…) on damaged files
        raise BadImage(path, UNREADABLE, f"{type(exc).__name__}: {exc}".strip()) from None


def read(path: Path | str) -> np.ndarray:
    """The file's pixels as training sees them (uint8 H×W×3); BadImage naming the file and why otherwise."""
    return decode(read_bytes(path), path)


def _rgb(img: Image.Image) -> np.ndarray:
    if img.mode in _HIGH_BIT_MODES:
        grey = np.clip(np.asarray(img).astype(np.int64) >> _HIGH_BIT_MODES[img.mode], 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    if img.mode == "F":
        grey = np.clip(np.round(np.asarray(img)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    pixels = np.asarray(img.convert("RGB"), dtype=np.uint8)
    if pixels.ndim != 3 or pixels.shape[0] == 0 or pixels.shape[1] == 0:
        raise ValueError(f"decoded to shape {pixels.shape}")
    return pixels
