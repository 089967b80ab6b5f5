"""Fingerprints that identify a trained baseline: its code, its weights file, its image folder.

Folder and file digests are cached by path, size and modification time, so an
unchanged 100k-image folder is read and verified once, not on every run.
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from edge.bundle import sha256_file
from steps import image_file

STEPS_DIR = Path(__file__).resolve().parent
# The modules whose code decides what a trained baseline is: architecture, preprocessing,
# split and shuffle order, input pipeline, distribution, the training loop and its seeding.
SHAPING_MODULES = ("model.py", "train.py", "data.py", "image_file.py", "folder_scan.py", "splits.py", "input_cache.py",
                   "distribute.py", "baseline.py")


@dataclass(frozen=True)
class FolderDigest:
    digest: str  # of the usable files only
    hashed: int  # files read and decoded now
    cached: int  # files whose digest came from the cache
    bad: tuple[image_file.BadImage, ...] = ()  # files that cannot be used, each with its reason


def code_fingerprint(steps_dir: Path = STEPS_DIR) -> str:
    """Digest of the model/training code and the Keras version that builds the architecture."""
    h = hashlib.sha256()
    for name in SHAPING_MODULES:
        path = steps_dir / name
        h.update(name.encode() + b"\0")
        h.update(path.read_bytes() if path.exists() else b"<missing>")
    h.update(f"keras=={_version('keras')}".encode())
    return h.hexdigest()[:16]


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "none"


def cache_root() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "edgeq" / "fingerprints"


def _load_cache(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _save_cache(path: Path, content: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(content, fh)
        os.replace(tmp, path)
    except OSError:
        pass  # a cache that cannot be written only costs time next run


def _stat_key(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _image_stat_key(path: Path) -> list[int]:
    st = image_file.regular_stat(path)
    return [st.st_size, st.st_mtime_ns]


def file_sha256(path: Path, cache_dir: Path | None = None) -> str:
    """sha256 of a file, cached by path, size and mtime."""
    path = Path(path).resolve()
    cache_file = (cache_dir or cache_root()) / "files.json"
    cache = _load_cache(cache_file)
    key, stat = str(path), _stat_key(path)
    hit = cache.get(key)
    if hit and hit[:2] == stat:
        return hit[2]
    digest = sha256_file(path)
    cache[key] = [*stat, digest]
    _save_cache(cache_file, cache)
    return digest


def _verified_digest(path: Path) -> str:
    """Read the file once: hash its bytes and decode them exactly as training will (BadImage if it cannot)."""
    content = image_file.read_bytes(path)
    image_file.decode(content, path)
    return hashlib.sha256(content).hexdigest()


def _relative(path: Path, class_dir: Path, label: str) -> str:
    """``label/name``, or ``label/sub/name`` for an image in a nested folder."""
    try:
        return f"{label}/{path.relative_to(class_dir).as_posix()}"
    except ValueError:
        return f"{label}/{path.name}"


def folder_fingerprint(root: Path, classes: dict[str, list[Path]], cache_dir: Path | None = None) -> FolderDigest:
    """Digest of an image folder's usable files (class, path in the class folder, content); only new or changed
    files are read, and every file that cannot be used is collected (never only the first)."""
    given, root = Path(root), Path(root).resolve()
    cache_file = (cache_dir or cache_root()) / f"{hashlib.sha256(str(root).encode()).hexdigest()[:24]}.json"
    cache = _load_cache(cache_file)
    old = cache.get("files", {}) if cache.get("root") == str(root) else {}
    files: dict[str, list] = {}
    digest = hashlib.sha256()
    hashed = cached = 0
    bad: list[image_file.BadImage] = []
    complete = False
    try:
        for label, paths in classes.items():
            for path in paths:
                rel = _relative(path, given / label, label)
                try:
                    stat = _image_stat_key(path)
                    hit = old.get(rel)
                    if hit and hit[:2] == stat:
                        sha, cached = hit[2], cached + 1
                    else:
                        sha, hashed = _verified_digest(path), hashed + 1
                except image_file.BadImage as exc:
                    bad.append(exc)
                    continue
                files[rel] = [*stat, sha]
                digest.update(f"{rel}\0{sha}\n".encode())
        complete = True
    finally:  # keep what was verified, even when something stops the scan
        if hashed or len(files) != len(old):
            _save_cache(cache_file, {"root": str(root), "files": files if complete else {**old, **files}})
    return FolderDigest(digest.hexdigest()[:16], hashed, cached, tuple(bad))
