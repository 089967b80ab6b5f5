"""Ed25519 signatures over a bundle's manifest: the pipeline signs, a device verifies.

A sha256 tag served by the same server that serves the file only detects corruption.
The signature is made with a key the user holds, so a device started with the public
key accepts only files that key signed, whatever the server says.

The signature file (``manifest.json.sig``, JSON) names the algorithm, the signing key's
fingerprint and the base64 signature over the exact bytes of ``manifest.json``; the
manifest lists the sha256 of every other file, so verifying it covers the whole bundle.

    edgeq keygen edgeq-signing.key                      # writes .key (mode 600) and .key.pub
    python -m edge.signing sign BUNDLE_DIR --key edgeq-signing.key
    python -m edge.signing verify BUNDLE_DIR --trust-key edgeq-signing.key.pub
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import stat
import sys
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from edge.bundle import BundleError, sha256_file
from edge.contract import DEVICE_FILES, ENV_SIGNING_KEY, MANIFEST_FILE, SIGNATURE_FILE, ExitCode

ALGORITHM = "Ed25519"
_MAX_SIGNATURE_FILE_BYTES = 4096
_MAX_KEY_FILE_BYTES = 16384


class SigningKeyError(ValueError):
    """A key file is missing, unreadable, not Ed25519, or (private) readable by others: a configuration error."""


class SignatureError(BundleError):
    """A bundle is unsigned, its signature is bad, or it was signed by another key: the bundle is rejected."""


def fingerprint(key: Ed25519PublicKey | Ed25519PrivateKey | Path | str) -> str:
    """``sha256:<hex>`` of the raw 32-byte public key (a key object, or a public or private key file)."""
    if isinstance(key, (str, Path)):
        key = _load_any(Path(key))
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def keygen(private_key_path: Path, public_key_path: Path | None = None) -> str:
    """Write a new key pair (private PEM, mode 600; public PEM next to it as ``.pub``); returns the fingerprint.

    Refuses to overwrite an existing file: a lost private key cannot be recovered, and
    devices trust the old public key until they are given the new one.
    """
    private_key_path = Path(private_key_path)
    public_key_path = Path(public_key_path) if public_key_path else private_key_path.with_name(private_key_path.name + ".pub")
    for path in (private_key_path, public_key_path):
        if path.exists():
            raise SigningKeyError(f"{path} already exists; remove it first or choose another path")
    key = Ed25519PrivateKey.generate()
    private_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    public_pem = key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    private_key_path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(private_key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(private_pem)
    public_key_path.write_bytes(public_pem)
    return fingerprint(key)


def load_private_key(path: Path | str) -> Ed25519PrivateKey:
    """An Ed25519 private key (PEM PKCS#8 or OpenSSH, unencrypted) from a file readable by its owner only."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
    except OSError as exc:
        raise SigningKeyError(f"signing key {path} cannot be read ({exc.strerror}); create one with: "
                              f"edgeq keygen {path}") from None
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise SigningKeyError(f"signing key {path} is readable by others; run: chmod 600 {path}")
    key = _load_any(path)
    if not isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is a public key; the pipeline needs the private key (the file without .pub)")
    return key


def load_public_key(path: Path | str) -> Ed25519PublicKey:
    """An Ed25519 public key (PEM, or an OpenSSH ``ssh-ed25519 …`` line) to trust."""
    path = Path(path)
    key = _load_any(path)
    if isinstance(key, Ed25519PrivateKey):
        raise SigningKeyError(f"{path} is a private key; give the device only the public key ({path.name}.pub)")
    return key


def sign_manifest(bundle_dir: Path | str, private_key: Path | str | Ed25519PrivateKey) -> str:
    """Sign ``bundle_dir/manifest.json`` into ``bundle_dir/manifest.json.sig``; returns the key's fingerprint."""
    bundle_dir = Path(bundle_dir)
    key = private_key if isinstance(private_key, Ed25519PrivateKey) else load_private_key(private_key)
    try:
        manifest = (bundle_dir / MANIFEST_FILE).read_bytes()
    except OSError as exc:
        raise BundleError(f"cannot sign {bundle_dir}: {MANIFEST_FILE} cannot be read ({exc.strerror})") from None
    fp = fingerprint(key)
    record = {
        "algorithm": ALGORITHM,
        "key_fingerprint": fp,
        "signed_file": MANIFEST_FILE,
        "signature": base64.b64encode(key.sign(manifest)).decode("ascii"),
    }
    (bundle_dir / SIGNATURE_FILE).write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return fp


def verify_manifest(bundle_dir: Path | str, public_key: Path | str | Ed25519PublicKey) -> str:
    """Check the bundle is exactly what the trusted key signed; returns the fingerprint, else SignatureError.

    In order: the signature file exists and is well formed (else "unsigned"), it names the
    trusted key (else "signed by another key"), the signature is valid over the exact bytes of
    manifest.json (else "bad signature"), and every device file is listed in the manifest
    with a matching sha256 (else the file that differs).
    """
    bundle_dir = Path(bundle_dir)
    key = public_key if isinstance(public_key, Ed25519PublicKey) else load_public_key(public_key)
    trusted = fingerprint(key)
    record = _read_signature_file(bundle_dir / SIGNATURE_FILE)
    if record.get("algorithm") != ALGORITHM:
        raise SignatureError(f"{SIGNATURE_FILE} uses {record.get('algorithm')!r}, not {ALGORITHM}")
    if record.get("key_fingerprint") != trusted:
        raise SignatureError(
            f"signed by another key ({_short(record.get('key_fingerprint'))}), not the trusted key ({_short(trusted)})"
        )
    try:
        signature = base64.b64decode(str(record.get("signature", "")), validate=True)
        manifest = (bundle_dir / MANIFEST_FILE).read_bytes()
    except (binascii.Error, ValueError):
        raise SignatureError(f"bad signature: {SIGNATURE_FILE} holds no valid base64 signature") from None
    except OSError as exc:
        raise SignatureError(f"{MANIFEST_FILE} cannot be read ({exc.strerror})") from None
    try:
        key.verify(signature, manifest)
    except InvalidSignature:
        raise SignatureError(f"bad signature: {MANIFEST_FILE} is not what the trusted key ({_short(trusted)}) signed") from None
    _check_files_against(bundle_dir, manifest)
    return trusted


def _check_files_against(bundle_dir: Path, manifest_bytes: bytes) -> None:
    try:
        files = json.loads(manifest_bytes)["files"]
    except (ValueError, KeyError, TypeError):
        raise SignatureError(f"the signed {MANIFEST_FILE} lists no files") from None
    for name in DEVICE_FILES:
        if name == MANIFEST_FILE:
            continue
        if name not in files:
            raise SignatureError(f"the signed {MANIFEST_FILE} does not cover {name}")
        path = bundle_dir / name
        if not path.is_file() or sha256_file(path) != files[name]:
            raise SignatureError(f"{name} is not the file the signed {MANIFEST_FILE} describes")


def _read_signature_file(path: Path) -> dict:
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise SignatureError(f"unsigned: the version has no {SIGNATURE_FILE}") from None
    except OSError as exc:
        raise SignatureError(f"{SIGNATURE_FILE} cannot be read ({exc.strerror})") from None
    if size > _MAX_SIGNATURE_FILE_BYTES:
        raise SignatureError(f"{SIGNATURE_FILE} is {size} bytes, not a signature")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise SignatureError(f"unsigned: {SIGNATURE_FILE} is not a signature record") from None
    if not isinstance(record, dict):
        raise SignatureError(f"unsigned: {SIGNATURE_FILE} is not a signature record")
    return record


def _load_any(path: Path) -> Ed25519PrivateKey | Ed25519PublicKey:
    try:
        if path.stat().st_size > _MAX_KEY_FILE_BYTES:
            raise SigningKeyError(f"{path} is too large to be a key file")
        data = path.read_bytes()
    except OSError as exc:
        raise SigningKeyError(f"key file {path} cannot be read ({exc.strerror})") from None
    loaders = (
        lambda: serialization.load_pem_private_key(data, password=None),
        lambda: serialization.load_pem_public_key(data),
        lambda: serialization.load_ssh_private_key(data, password=None),
        lambda: serialization.load_ssh_public_key(data),
    )
    for load in loaders:
        try:
            key = load()
        except TypeError:
            raise SigningKeyError(f"{path} is encrypted with a passphrase; edgeq needs an unencrypted key (mode 600)") from None
        except (ValueError, UnsupportedAlgorithm):
            continue
        if isinstance(key, (Ed25519PrivateKey, Ed25519PublicKey)):
            return key
        raise SigningKeyError(f"{path} holds a {type(key).__name__.lstrip('_')} key; edgeq signs with Ed25519 "
                              "(edgeq keygen PATH)")
    raise SigningKeyError(f"{path} is not a PEM or OpenSSH key file")


def _short(fp: object) -> str:
    text = str(fp or "none")
    return text[:19] + "…" if len(text) > 19 else text


def main(argv: list[str] | None = None) -> int:
    """``keygen PATH`` | ``sign DIR --key PATH`` | ``verify DIR --trust-key PATH`` | ``fingerprint PATH``."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m edge.signing", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("keygen", help="deprecated: use `edgeq keygen PATH`")
    p.add_argument("path", type=Path)
    p = sub.add_parser("sign", help="sign DIR/manifest.json into DIR/manifest.json.sig")
    p.add_argument("bundle_dir", type=Path)
    p.add_argument("--key", type=Path, default=os.environ.get(ENV_SIGNING_KEY), help=f"private key (${ENV_SIGNING_KEY})")
    p = sub.add_parser("verify", help="check DIR against a trusted public key")
    p.add_argument("bundle_dir", type=Path)
    p.add_argument("--trust-key", type=Path, required=True)
    p = sub.add_parser("fingerprint", help="print a key file's fingerprint")
    p.add_argument("path", type=Path)
    args = parser.parse_args(argv)
    try:
        if args.command == "keygen":
            # One keygen for users: `edgeq keygen`. This spelling keeps working for one release.
            print(f"python -m edge.signing keygen is deprecated and will be removed in the next release; "
                  f"use edgeq keygen {args.path}", file=sys.stderr)
            fp = keygen(args.path)
            print(f"wrote {args.path} (private, mode 600: keep it off the devices) and {args.path}.pub (give it to the devices)")
            print(f"fingerprint {fp}")
        elif args.command == "sign":
            if args.key is None:
                parser.error(f"--key or {ENV_SIGNING_KEY} is required")
            print(f"signed {args.bundle_dir / MANIFEST_FILE} with {sign_manifest(args.bundle_dir, args.key)}")
        elif args.command == "verify":
            print(f"{args.bundle_dir}: good signature by {verify_manifest(args.bundle_dir, args.trust_key)}")
        else:
            print(fingerprint(args.path))
    except SigningKeyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return int(ExitCode.BAD_CONFIG)
    except BundleError as exc:
        print(f"rejected: {exc}", file=sys.stderr)
        return int(ExitCode.REJECTED)
    return int(ExitCode.OK)


if __name__ == "__main__":
    sys.exit(main())
