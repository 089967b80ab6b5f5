"""Writes that survive power loss: fsync the file, rename it into place, fsync the directory."""
from __future__ import annotations

import os
from pathlib import Path


def _fsync(path: Path, flags: int = os.O_RDONLY) -> None:
    fd = os.open(path, flags)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(directory: Path) -> None:
    _fsync(directory, os.O_RDONLY | os.O_DIRECTORY)


def atomic_write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text``: after a crash it holds either the old or the new text, whole."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)


def atomic_symlink(target: str | Path, link: Path) -> None:
    """Point ``link`` at ``target`` (kept as given, e.g. relative) in one rename."""
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)
    fsync_dir(link.parent)


def fsync_tree(directory: Path) -> None:
    """fsync every file in ``directory`` (one level) and the directory itself."""
    for child in directory.iterdir():
        if child.is_file():
            _fsync(child)
    fsync_dir(directory)
