"""The image folder scanned once, before any heavy work: what is used, what is skipped and why, whether it splits soundly."""
from __future__ import annotations

import math
import mimetypes
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from steps import fingerprint, image_file
from steps.splits import exact, split_counts

# Why a file is left out without refusing the folder.
HIDDEN = "hidden"
NOT_AN_IMAGE = "not an image"
FORMAT = "format not supported"
OUTSIDE = "outside a class folder"
SHOWN = 5  # files a message names; the rest are counted
# The largest class this many times the smallest: accuracy mostly measures the large classes.
IMBALANCE_RATIO = 10


class ScanError(ValueError):
    """The folder cannot be used; one line naming every problem and its fix."""


@dataclass(frozen=True)
class FolderScan:
    root: Path
    classes: dict[str, list[Path]]  # label -> usable image files, sorted
    split: dict[str, dict[str, int]]  # label -> {"train", "val", "test"} counts
    skipped: dict[str, list[str]]  # reason -> paths relative to the root
    digest: str
    warnings: tuple[str, ...]

    @property
    def images(self) -> int:
        return sum(len(files) for files in self.classes.values())

    def summary(self) -> str:
        """One line: images used, per split, and what was skipped."""
        totals = {k: sum(c[k] for c in self.split.values()) for k in ("train", "val", "test")}
        line = (f"image folder {self.root}: {self.images:,} images used in {len(self.classes):,} classes "
                f"(train {totals['train']:,}, val {totals['val']:,}, test {totals['test']:,})")
        skipped = sum(len(v) for v in self.skipped.values())
        if skipped:
            line += f"; {skipped:,} skipped: " + _by_reason(self.skipped)
        return line

    def table(self) -> str:
        """Markdown for the run's artifact: per class counts, then every skipped file and why."""
        lines = [f"# Image folder scan: {self.root}", "", self.summary(), ""]
        lines += [f"Warning: {w}" for w in self.warnings] + ([""] if self.warnings else [])
        lines += ["| class | images | train | val | test |", "|---|---|---|---|---|"]
        lines += [f"| {label} | {len(self.classes[label])} | {c['train']} | {c['val']} | {c['test']} |"
                  for label, c in self.split.items()]
        if any(self.skipped.values()):
            lines += ["", "| skipped | reason |", "|---|---|"]
            lines += [f"| {path} | {reason} |" for reason, paths in self.skipped.items() for path in paths]
        return "\n".join(lines) + "\n"


def scan(root: Path, train_fraction: float, val_fraction: float, cache_dir: Path | None = None) -> FolderScan:
    """Walk ``root`` (one sub-folder per class, nested folders included), decode every image the way training
    will, and refuse with one line where the folder cannot train and split soundly."""
    skipped: dict[str, list[str]] = {}
    unlisted: list[image_file.BadImage] = []
    candidates: dict[str, list[Path]] = {}
    for entry in _listing(root):
        if entry.name.startswith("."):
            skipped.setdefault(HIDDEN, []).append(_rel(entry, root))
        elif _is_dir(entry):
            candidates[entry.name] = sorted(_files(root, entry, skipped, {os.path.realpath(entry)}, unlisted))
        else:
            skipped.setdefault(OUTSIDE, []).append(entry.name)
    found = fingerprint.folder_fingerprint(root, candidates, cache_dir)
    bad_paths = {b.path for b in found.bad}
    classes = {label: [f for f in files if f not in bad_paths] for label, files in candidates.items()}
    split = {label: split_counts(len(files), train_fraction, val_fraction) for label, files in classes.items()}
    problems = _problems(root, (*unlisted, *found.bad), classes, split, skipped, train_fraction, val_fraction)
    if problems:
        raise ScanError(f"image folder {root}: " + "; ".join(problems))
    return FolderScan(root, classes, split, skipped, found.digest, _warnings(classes, skipped))


def _listing(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise ScanError(f"cannot list {folder} ({exc.strerror or exc}): make it readable") from None


def _is_dir(entry: os.DirEntry) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False


def _files(root: Path, folder: os.DirEntry, skipped: dict[str, list[str]], seen: set[str],
           unlisted: list[image_file.BadImage]) -> list[Path]:
    """Image files under ``folder``, nested folders included (each real folder once: links cannot loop)."""
    out: list[Path] = []
    try:
        with os.scandir(folder.path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        unlisted.append(image_file.BadImage(Path(folder.path), image_file.UNREADABLE, f"a folder: {exc.strerror or exc}"))
        return out
    for entry in entries:
        path = Path(entry.path)
        suffix = path.suffix.lower()
        if entry.name.startswith("."):
            skipped.setdefault(HIDDEN, []).append(_rel(path, root))
        elif _is_dir(entry):
            real = os.path.realpath(entry.path)
            if real not in seen:
                seen.add(real)
                out += _files(root, entry, skipped, seen, unlisted)
        elif suffix in image_file.SUFFIXES:
            out.append(path)  # broken links and pipes too: the fingerprint names them
        elif (mimetypes.guess_type(entry.name)[0] or "").startswith("image/"):
            skipped.setdefault(FORMAT, []).append(_rel(path, root))
        else:
            skipped.setdefault(NOT_AN_IMAGE, []).append(_rel(path, root))
    return out


def _rel(path: Path | os.DirEntry, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _names(paths: list[str]) -> str:
    shown = ", ".join(paths[:SHOWN])
    return shown + (f" and {len(paths) - SHOWN:,} more" if len(paths) > SHOWN else "")


def _by_reason(groups: dict[str, list[str]]) -> str:
    parts = []
    for reason, paths in groups.items():
        if reason in (FORMAT, NOT_AN_IMAGE):
            suffixes = Counter(Path(p).suffix.lower() or "(no suffix)" for p in paths)
            parts.append(f"{len(paths):,} {reason} ({', '.join(f'{n} {s}' for s, n in suffixes.most_common(SHOWN))})")
        else:
            parts.append(f"{len(paths):,} {reason} ({_names(paths)})")
    return ", ".join(parts)


def _minimum(fraction: float) -> int:
    """The fewest images whose share of ``fraction``, rounded down, is one."""
    f = exact(fraction)
    return math.ceil(f.denominator / f.numerator)


def _problems(root: Path, bad: tuple[image_file.BadImage, ...], classes: dict[str, list[Path]],
              split: dict[str, dict[str, int]], skipped: dict[str, list[str]], train_fraction: float,
              val_fraction: float) -> list[str]:
    problems = []
    unnamable = [repr(label) for label in classes if any(not ch.isprintable() for ch in label)]
    if unnamable:  # labels.txt holds one name a line: a line break in a name would make two labels on the device
        problems.append(f"class folder name(s) with a line break or control character: {_names(unnamable)}; rename them")
    if bad:
        groups: dict[str, list[str]] = {}
        for b in bad:
            groups.setdefault(b.reason, []).append(f"{_rel(b.path, root)} ({b.detail})" if len(bad) <= SHOWN else _rel(b.path, root))
        problems.append(f"{len(bad):,} image file(s) cannot be used: {_by_reason(groups)}; remove or replace them")
    with_images = [label for label, files in classes.items() if files]
    if len(with_images) < 2:
        note = f" ({sum(map(len, skipped.values())):,} files skipped: {_by_reason(skipped)})" if skipped else ""
        problems.append(f"{len(with_images)} class sub-folder(s) with images{note}; it needs at least 2 "
                        "(one sub-folder per class, images in it or in folders under it)")
        return problems
    need = _minimum(train_fraction)
    short = [f"'{label}' has {len(classes[label])}" for label, c in split.items() if c["train"] == 0]
    if short:
        problems.append(f"{len(short):,} class(es) would get no training image: {_names(short)} "
                        f"(each class needs at least {need} images: add images, or remove the class folder)")
    elif val_fraction > 0 and not sum(c["val"] for c in split.values()):
        problems.append(f"the validation split is empty: every class has fewer than {_minimum(val_fraction)} images; "
                        "add images")
    return problems


def _warnings(classes: dict[str, list[Path]], skipped: dict[str, list[str]]) -> tuple[str, ...]:
    out = []
    sizes = {label: len(files) for label, files in classes.items()}
    large, small = max(sizes, key=sizes.get), min(sizes, key=sizes.get)
    if sizes[large] >= IMBALANCE_RATIO * sizes[small]:
        out.append(f"classes are imbalanced: '{large}' has {sizes[large]:,} images, '{small}' {sizes[small]:,} "
                   f"({sizes[large] / sizes[small]:.0f}×); test accuracy mostly measures the large classes")
    if skipped.get(FORMAT):
        suffixes = Counter(Path(p).suffix.lower() for p in skipped[FORMAT])
        out.append(f"{len(skipped[FORMAT]):,} image file(s) skipped in formats training does not read "
                   f"({', '.join(f'{n} {s}' for s, n in suffixes.most_common(SHOWN))}): convert them to JPEG or PNG to use them")
    return tuple(out)
