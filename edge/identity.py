"""The device's own Ed25519 key and report sequence: made on the device, the private part never leaves it.

    state_dir/identity/            mode 700
      device.key                   PKCS#8 PEM, mode 600: signs every report and status (edge/evidence.py)
      seq                          the last sequence number signed

An operator enrols the public key (``edgeq-pull identity`` prints it) for the device id and the
models it may speak about (``edgeq device enroll``). The state directory is untrusted input too:
a key file that is not a private Ed25519 key is set aside (``device.key.bad-<time>``) and a new key
made — the device keeps working, and its evidence shows as unverified until it is enrolled again.
The sequence never goes back: it is at least the server-corrected time in ms, so even a lost or
corrupted ``seq`` file cannot make a new report look older than an old one.
"""
from __future__ import annotations

import logging
import os
import stat
import time
from dataclasses import dataclass
from pathlib import Path

from edge import clock, evidence
from edge.fsutil import atomic_write, fsync_dir

log = logging.getLogger("edgeq-pull")

IDENTITY_DIR = "identity"
KEY_FILE = "device.key"
SEQ_FILE = "seq"
_MAX_KEY_BYTES = 16384


@dataclass(frozen=True)
class DeviceKey:
    private: object  # Ed25519PrivateKey (cryptography is imported only when a key is needed)
    path: Path
    created: bool = False  # made by this call (a new device, or a damaged key set aside)

    def public_raw(self) -> bytes:
        from cryptography.hazmat.primitives import serialization

        return self.private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)

    def public_text(self) -> str:
        return evidence.public_key_text(self.public_raw())

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def _dir(state_root: Path) -> Path:
    path = Path(state_root) / IDENTITY_DIR
    if path.is_symlink() or (path.exists() and not path.is_dir()):
        raise NotADirectoryError(f"{path} is not a directory; move it away so edgeq-pull can keep the device key there")
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _read_key(path: Path):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    info = os.lstat(path)
    if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_KEY_BYTES:
        return None
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError):
        return None
    if not isinstance(key, Ed25519PrivateKey):
        return None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        os.chmod(path, 0o600)  # ours to fix: the key only signs this device's evidence
    return key


def load_or_create(state_root: Path) -> DeviceKey:
    """The device's key; made (mode 600, from the first byte) when there is none or the one there is unusable."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    directory = _dir(state_root)
    path = directory / KEY_FILE
    if path.exists() or path.is_symlink():
        key = _read_key(path)
        if key is not None:
            return DeviceKey(key, path)
        aside = path.with_name(f"{KEY_FILE}.bad-{int(time.time())}")
        os.replace(path, aside)
        log.warning("the device key %s was not a private Ed25519 key; set aside as %s and a new one made: "
                    "enrol it again (edgeq-pull identity prints it)", path, aside.name)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    tmp = path.with_name(KEY_FILE + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(pem)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(directory)
    return DeviceKey(key, path, created=True)


def next_seq(state_root: Path) -> int:
    """A sequence number above every one this device signed before, kept on disk before it is used."""
    path = _dir(state_root) / SEQ_FILE
    try:
        text = path.read_text(encoding="ascii").strip() if path.is_file() and not path.is_symlink() else ""
        last = int(text) if text.isdigit() and len(text) < 20 else 0
    except (OSError, UnicodeDecodeError):
        last = 0
    seq = max(last + 1, clock.now_ms())
    atomic_write(path, str(seq))
    return seq
