"""The device's state directory: installed models, what is current, the outbox.

Layout::

    state_dir/
      lock                      held while a puller runs
      state.json                current and previous installed version
      models/<name>/v<N>-<sha>  one verified bundle per installed version
      current, previous         symlinks to bundles (swapped atomically)
      downloads/                temporary, never served from
      outbox/                   reports waiting for the server
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path


@dataclass(frozen=True)
class Installed:
    name: str
    version: str
    sha256: str
    path: str
    benchmarked: bool = False

    def same_as(self, name: str, version: str, sha256: str) -> bool:
        return (self.name, self.version, self.sha256) == (name, version, sha256)


class DeviceState:
    def __init__(self, root: Path):
        self.root = Path(root)
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

    def _read(self) -> dict:
        path = self.root / "state.json"
        if not path.exists():
            return {}
        return json.loads(path.read_text(encoding="utf-8"))

    def _write(self, data: dict) -> None:
        _atomic_write(self.root / "state.json", json.dumps(data, indent=2))

    def current(self) -> Installed | None:
        entry = self._read().get("current")
        return Installed(**entry) if entry else None

    def previous(self) -> Installed | None:
        entry = self._read().get("previous")
        return Installed(**entry) if entry else None

    def new_download_dir(self) -> Path:
        return Path(tempfile.mkdtemp(prefix="dl-", dir=self.root / "downloads"))

    def install(self, download_dir: Path, name: str, version: str, sha256: str) -> Installed:
        """Move a verified download into place and make it current; the old current becomes previous."""
        target = self.root / "models" / _safe(name) / f"v{version}-{sha256[:12]}"
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(download_dir, target)
        old = self.current()
        new = Installed(name=name, version=version, sha256=sha256, path=str(target))
        _atomic_symlink(target, self.current_link)
        if old and old.path != new.path:
            _atomic_symlink(Path(old.path), self.root / "previous")
        self._write({"current": asdict(new), "previous": asdict(old) if old and old.path != new.path else None})
        self._prune(keep={new.path, old.path if old else ""})
        return new

    def mark_benchmarked(self) -> None:
        data = self._read()
        data["current"]["benchmarked"] = True
        self._write(data)

    def _prune(self, keep: set[str]) -> None:
        for bundle in (self.root / "models").glob("*/*"):
            if str(bundle) not in keep:
                shutil.rmtree(bundle, ignore_errors=True)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name)


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _atomic_symlink(target: Path, link: Path) -> None:
    tmp = link.with_name(link.name + ".tmp")
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    tmp.symlink_to(target)
    os.replace(tmp, link)
