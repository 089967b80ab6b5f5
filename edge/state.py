"""The device's state directory: installed models, what is current, rejections, the outbox.

Layout (every path inside is relative to the state directory, so links and records
stay valid from any working directory, and the directory can be moved)::

    state_dir/
      lock                         held while a puller runs
      models/<name>/v<N>-<sha12>/  one verified bundle per installed version
      models/<name>/v<N>-<sha12>.json   what that bundle is (name, version, sha256)
      current, previous            relative symlinks to bundles (swapped atomically)
      state.json                   which bundle has been benchmarked (a cache: losing it costs a benchmark)
      rejected.json                versions this device refused, so they are not downloaded again
      downloads/                   temporary, emptied at the start of every run, never served from
      outbox/                      reports waiting for the server (dead-letter/, quarantine/, unrecorded/)

What is current is read from the ``current`` link and the record beside its target,
never from a cache: after a crash at any point the next run sees what is really on disk.
What is on disk is untrusted too (a crash, a person, another version's puller): a link
counts only when it leads to a bundle with its record inside ``models/``; a ``current``
that loops, leaves the state dir or leads nowhere goes back to the last good model
(repair_current); a file where a folder belongs, or a folder where the lock belongs,
is a LayoutError naming the path and the fix.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterator

from edge.bundle import BundleError, verify_bundle
from edge.fsutil import atomic_symlink, atomic_write, fsync_dir, fsync_tree

_REJECTIONS_KEPT = 20
# What must be a folder, and what must be a file, wherever the state dir has one.
_FOLDERS = ("models", "downloads", "outbox", "outbox/dead-letter", "outbox/quarantine", "outbox/unrecorded")
_FILES = ("lock", "state.json", "rejected.json")
_LINKS = ("current", "previous")  # a link is swapped in by a rename, which cannot replace a folder


class LayoutError(Exception):
    """Something of the wrong kind stands where the state dir keeps a folder, a file or a link."""


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    sha256: str
    path: str  # absolute path of the bundle directory
    benchmarked: bool = False

    def same_as(self, name: str, version: str, sha256: str) -> bool:
        return (self.name, self.version, self.sha256) == (name, version, sha256)


@dataclass(frozen=True)
class Rejection:
    name: str
    version: str
    sha256: str
    reason: str
    at: str
    retry: str = ""  # the version's contract.TAG_RETRY when it was refused: an operator's new token asks for one retry

    def same_as(self, name: str, version: str, sha256: str) -> bool:
        return (self.name, self.version, self.sha256) == (name, version, sha256)


class DeviceState:
    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
        check_layout(self.root)
        for sub in ("models", "downloads", "outbox"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)

    @property
    def lock_path(self) -> Path:
        return self.root / "lock"

    @property
    def outbox_dir(self) -> Path:
        return self.root / "outbox"

    @property
    def current_link(self) -> Path:
        return self.root / "current"

    @property
    def previous_link(self) -> Path:
        return self.root / "previous"

    # -- reading -----------------------------------------------------------------

    def current(self) -> Installed | None:
        return self._installed_at(self.current_link)

    def previous(self) -> Installed | None:
        return self._installed_at(self.previous_link)

    def _installed_at(self, link: Path) -> Installed | None:
        bundle, _ = self._bundle_behind(link)
        return self._installed_in(bundle) if bundle else None

    def _installed_in(self, bundle: Path) -> Installed | None:
        """``bundle`` (a folder in ``models/``) as its record describes it, or None without a sound record."""
        record = _read_json(_record_path(bundle))
        if not isinstance(record, dict) or not all(isinstance(record.get(k), str) for k in ("name", "version", "sha256")):
            return None
        return Installed(name=record["name"], version=record["version"], sha256=record["sha256"],
                         path=str(bundle), benchmarked=self._cache().get("benchmarked") == self._rel(bundle))

    def _bundle_behind(self, link: Path) -> tuple[Path | None, str]:
        """The bundle folder inside ``models/`` that ``link`` leads to, or None and why not."""
        if not link.is_symlink():
            return None, "not a link"
        try:
            bundle = link.resolve(strict=True)
        except FileNotFoundError:
            return None, "leads to nothing"
        except (OSError, RuntimeError):  # ELOOP; Python before 3.13 raises RuntimeError for a loop
            return None, "is a symlink loop"
        if not self._in_models(bundle):
            return None, "leads outside the state dir's models/"
        return bundle, ""

    def _in_models(self, bundle: Path) -> bool:
        """Whether ``bundle`` (resolved) is a bundle folder of this state dir's ``models/``."""
        return bundle.parent.parent == self.root / "models" and bundle.is_dir()

    def repair_current(self) -> str | None:
        """Point a ``current`` that leads nowhere valid back at the last good model; the log line, or None if it was fine.

        The last good model: ``previous`` when it is valid, else the bundle benchmarked here
        last (it was current), when it still verifies; else none. Never a bundle only
        staged, which may not have passed the health gate.
        """
        link = self.current_link
        if not link.is_symlink() or self.current():
            return None
        _, why = self._bundle_behind(link)
        why = why or "leads to a bundle without its record"
        target = os.readlink(link)
        good, which = self._last_good()
        if good:
            atomic_symlink(self._rel(Path(good.path)), link)
            return f"the current link {why} ({target!r}); back to v{good.version} ({which})"
        link.unlink()
        fsync_dir(self.root)
        return f"the current link {why} ({target!r}); removed, no model installed until this run installs one"

    def _last_good(self) -> tuple[Installed | None, str]:
        previous = self.previous()
        if previous and _verifies(previous):
            return previous, "previous"
        name = self._cache().get("benchmarked")
        bundle = _resolved(self.root / name) if isinstance(name, str) and name else None
        installed = self._installed_in(bundle) if bundle and self._in_models(bundle) else None
        if installed and _verifies(installed):
            return installed, "the model benchmarked here last"
        return None, ""

    def staged(self, name: str, version: str, sha256: str) -> Installed | None:
        """A bundle for exactly this version already in ``models/`` (left by an interrupted run)."""
        bundle = self._bundle_dir(name, version, sha256)
        record = _read_json(_record_path(bundle))
        if bundle.is_dir() and isinstance(record, dict) and (
                (record.get("name"), record.get("version"), record.get("sha256")) == (name, version, sha256)):
            return Installed(name, version, sha256, str(bundle))
        return None

    # -- changing ----------------------------------------------------------------

    def clean_downloads(self) -> int:
        """Remove what killed runs left in ``downloads/`` (only called under the lock)."""
        stale = list((self.root / "downloads").iterdir())
        for path in stale:
            shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        return len(stale)

    def clean_temporary(self) -> int:
        """Remove half-written records and links (``*.tmp``) a killed run or a full disk left (only under the lock)."""
        stale = [p for p in list(self.root.glob("*.tmp")) + list((self.root / "models").glob("*/*.tmp"))
                 if p.is_symlink() or p.is_file()]
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def new_download_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="dl-", dir=self.root / "downloads"))

    def stage(self, download_dir: Path, name: str, version: str, sha256: str) -> Installed:
        """Move a verified download into ``models/`` (not yet current), durably."""
        target = self._bundle_dir(name, version, sha256)
        self.discard_path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        fsync_tree(download_dir)
        download_dir.replace(target)
        fsync_dir(target.parent)
        atomic_write(_record_path(target),
                     json.dumps({"name": name, "version": version, "sha256": sha256}, indent=2))
        return Installed(name, version, sha256, str(target))

    def activate(self, new: Installed) -> tuple[Installed | None, Installed | None]:
        """Make ``new`` current; the old current becomes previous. Returns the old (current, previous).

        ``previous`` is written before ``current``: a crash between the two leaves the
        old model current and the new one staged, which the next run activates without
        a download.
        """
        old_current, old_previous = self.current(), self.previous()
        if old_current and old_current.path != new.path:
            atomic_symlink(self._rel(Path(old_current.path)), self.previous_link)
        atomic_symlink(self._rel(Path(new.path)), self.current_link)
        self._prune()
        return old_current, old_previous

    def restore(self, current: Installed | None, previous: Installed | None) -> None:
        """Point the links back (after a failed on-change hook)."""
        for link, installed in ((self.current_link, current), (self.previous_link, previous)):
            if installed:
                atomic_symlink(self._rel(Path(installed.path)), link)
            elif link.is_symlink():
                link.unlink()
                fsync_dir(self.root)

    def discard(self, installed: Installed) -> None:
        self.discard_path(Path(installed.path))

    def discard_path(self, bundle: Path) -> None:
        shutil.rmtree(bundle, ignore_errors=True)
        _record_path(bundle).unlink(missing_ok=True)

    def mark_benchmarked(self, installed: Installed) -> None:
        atomic_write(self.root / "state.json", json.dumps({"benchmarked": self._rel(Path(installed.path))}, indent=2))

    # -- rejections --------------------------------------------------------------

    def rejection_for(self, name: str, version: str, sha256: str) -> Rejection | None:
        return next((r for r in self._rejections() if r.same_as(name, version, sha256)), None)

    def remember_rejection(self, name: str, version: str, sha256: str, reason: str, retry: str = "") -> Rejection:
        rejection = Rejection(name, version, sha256, reason, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), retry)
        kept = [r for r in self._rejections() if not r.same_as(name, version, sha256)]
        entries = [asdict(r) for r in kept[-(_REJECTIONS_KEPT - 1):] + [rejection]]
        atomic_write(self.root / "rejected.json", json.dumps(entries, indent=2))
        return rejection

    def _rejections(self) -> list[Rejection]:
        data = _read_json(self.root / "rejected.json")
        out = []
        for entry in data if isinstance(data, list) else []:
            try:
                out.append(Rejection(**entry))
            except TypeError:
                continue
        return out

    # -- helpers -----------------------------------------------------------------

    def _bundle_dir(self, name: str, version: str, sha256: str) -> Path:
        return self.root / "models" / path_component(name) / f"v{version}-{sha256[:12]}"

    def _rel(self, path: Path) -> str:
        return str(path.relative_to(self.root))

    def _cache(self) -> dict:
        data = _read_json(self.root / "state.json")
        return data if isinstance(data, dict) else {}

    def _prune(self) -> None:
        keep = {p for p in (self.current(), self.previous()) if p}
        keep_paths = {Path(p.path) for p in keep}
        for bundle in (self.root / "models").glob("*/*"):
            if bundle.is_dir() and bundle not in keep_paths:
                self.discard_path(bundle)


def _resolved(path: Path) -> Path | None:
    """``path`` with every link followed, or None when it loops or leads to nothing."""
    try:
        return path.resolve(strict=True)
    except (OSError, RuntimeError):  # Python before 3.13 raises RuntimeError for a loop
        return None


def _verifies(installed: Installed) -> bool:
    """Whether the bundle's files still match its manifest and its model the sha256 it was installed with."""
    try:
        verify_bundle(Path(installed.path), installed.sha256)
        return True
    except (BundleError, OSError, ValueError, KeyError, TypeError):
        return False


def check_layout(root: Path) -> None:
    """LayoutError when a file stands where the state dir keeps a folder, or a folder where it keeps a file or link."""
    for path, want, fits in _expected(root):
        if (path.is_symlink() or path.exists()) and not fits(path):
            raise LayoutError(_misplaced(path, want))


def _expected(root: Path) -> Iterator[tuple[Path, str, Callable[[Path], bool]]]:
    yield root, "a folder", Path.is_dir
    yield from ((root / rel, "a folder", Path.is_dir) for rel in _FOLDERS)
    yield from ((root / rel, "a file", Path.is_file) for rel in _FILES)
    yield from ((root / rel, "a link", lambda p: p.is_symlink() or not p.is_dir()) for rel in _LINKS)


def _misplaced(path: Path, want: str) -> str:
    found = ("a broken link" if not path.exists() else "a folder" if path.is_dir()
             else "a file" if path.is_file() else "a special file")
    return (f"cannot use the state dir: {path} is {found} where edgeq-pull keeps {want}; move it aside "
            f"(mv {path} {path}.bad) or give --state-dir another place; the current model is untouched")


def _record_path(bundle: Path) -> Path:
    """What a bundle is (name, version, sha256), in a file beside it: ``v<N>-<sha12>.json``."""
    return bundle.with_name(bundle.name + ".json")


def _read_json(path: Path) -> dict | list | None:
    """The parsed file, or None when it is missing, empty or damaged (a crash or power loss)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def path_component(name: str) -> str:
    """A model name as one path component: never empty, never '.' or '..', never hidden."""
    clean = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)
    return "_" + clean if not clean or clean.startswith(".") else clean
