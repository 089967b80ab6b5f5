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
      outbox/                      reports waiting for the server (dead-letter/, quarantine/)

What is current is read from the ``current`` link and the record beside its target,
never from a cache: after a crash at any point the next run sees what is really on disk.
"""
from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from edge.fsutil import atomic_symlink, atomic_write, fsync_dir, fsync_tree

_REJECTIONS_KEPT = 20


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

    def same_as(self, name: str, version: str, sha256: str) -> bool:
        return (self.name, self.version, self.sha256) == (name, version, sha256)


class DeviceState:
    def __init__(self, root: Path):
        self.root = Path(root).expanduser().resolve()
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
        if not link.is_symlink():
            return None
        bundle = link.resolve()
        record = _read_json(_record_path(bundle))
        if not bundle.is_dir() or not record:
            return None
        try:
            return Installed(name=record["name"], version=record["version"], sha256=record["sha256"],
                             path=str(bundle), benchmarked=self._cache().get("benchmarked") == self._rel(bundle))
        except (KeyError, TypeError):
            return None

    def staged(self, name: str, version: str, sha256: str) -> Installed | None:
        """A bundle for exactly this version already in ``models/`` (left by an interrupted run)."""
        bundle = self._bundle_dir(name, version, sha256)
        record = _read_json(_record_path(bundle))
        if bundle.is_dir() and record and (record.get("name"), record.get("version"), record.get("sha256")) == (name, version, sha256):
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

    def remember_rejection(self, name: str, version: str, sha256: str, reason: str) -> Rejection:
        rejection = Rejection(name, version, sha256, reason, time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
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
