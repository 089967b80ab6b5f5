"""Signed manifests with real Ed25519 keys: what verifies, and every way a bundle is refused."""
from __future__ import annotations

import base64
import json
import subprocess
import sys

import numpy as np
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.rsa import generate_private_key

from edge import contract
from edge.bundle import BundleError, write_bundle
from edge.signing import SignatureError, SigningKeyError, fingerprint, keygen, load_private_key, sign_manifest, verify_manifest
from tests.conftest import REPO


@pytest.fixture()
def bundle(tmp_path):
    model = tmp_path / "src.tflite"
    model.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    images = np.random.default_rng(1).integers(0, 256, (4, 8, 8, 3), dtype=np.uint8)
    directory = tmp_path / "bundle"
    write_bundle(directory, model, ["cat", "dog"], images, np.array([0, 1, 1, 0]))
    return directory


@pytest.fixture()
def keys(tmp_path):
    private = tmp_path / "keys" / "edgeq-signing.key"
    fp = keygen(private)
    return private, private.with_name(private.name + ".pub"), fp


def test_keygen_writes_a_private_key_only_its_owner_can_read_and_a_public_key(keys):
    private, public, fp = keys
    assert private.stat().st_mode & 0o777 == 0o600
    assert b"PRIVATE" in private.read_bytes() and b"PUBLIC" in public.read_bytes()
    assert fp == fingerprint(private) == fingerprint(public)
    assert fp.startswith("sha256:") and len(fp) == len("sha256:") + 64


def test_keygen_never_overwrites_a_key(keys):
    private, _, _ = keys
    before = private.read_bytes()
    with pytest.raises(SigningKeyError, match="already exists"):
        keygen(private)
    assert private.read_bytes() == before


def test_a_signed_bundle_verifies_against_the_public_key(bundle, keys):
    private, public, fp = keys
    assert sign_manifest(bundle, private) == fp
    record = json.loads((bundle / contract.SIGNATURE_FILE).read_text())
    assert record["algorithm"] == "Ed25519" and record["key_fingerprint"] == fp
    assert verify_manifest(bundle, public) == fp


def test_an_unsigned_bundle_is_refused(bundle, keys):
    with pytest.raises(SignatureError, match="^unsigned"):
        verify_manifest(bundle, keys[1])


def test_a_tampered_manifest_is_a_bad_signature(bundle, keys):
    private, public, _ = keys
    sign_manifest(bundle, private)
    manifest = bundle / contract.MANIFEST_FILE
    manifest.write_text(manifest.read_text().replace('"cat"', '"cow"'))
    with pytest.raises(SignatureError, match="^bad signature"):
        verify_manifest(bundle, public)


def test_a_tampered_signature_is_a_bad_signature(bundle, keys):
    private, public, _ = keys
    sign_manifest(bundle, private)
    path = bundle / contract.SIGNATURE_FILE
    record = json.loads(path.read_text())
    raw = bytearray(base64.b64decode(record["signature"]))
    raw[0] ^= 1
    record["signature"] = base64.b64encode(bytes(raw)).decode()
    path.write_text(json.dumps(record))
    with pytest.raises(SignatureError, match="^bad signature"):
        verify_manifest(bundle, public)


@pytest.mark.parametrize("name", [contract.MODEL_FILE, contract.LABELS_FILE, contract.SAMPLE_FILE])
def test_a_file_changed_after_signing_is_refused(bundle, keys, name):
    private, public, _ = keys
    sign_manifest(bundle, private)
    with open(bundle / name, "ab") as fh:
        fh.write(b"\0")
    with pytest.raises(SignatureError, match=f"^{name} is not the file the signed"):
        verify_manifest(bundle, public)


def test_a_bundle_signed_by_another_key_is_refused(bundle, keys, tmp_path):
    _, public, trusted = keys
    other = tmp_path / "other.key"
    keygen(other)
    sign_manifest(bundle, other)
    with pytest.raises(SignatureError, match="^signed by another key") as info:
        verify_manifest(bundle, public)
    assert trusted[:19] in str(info.value)


def test_a_forger_who_names_the_trusted_fingerprint_still_fails(bundle, keys, tmp_path):
    """A server that re-signs changed files with its own key cannot borrow the trusted key's name."""
    _, public, trusted = keys
    forger = tmp_path / "forger.key"
    keygen(forger)
    sign_manifest(bundle, forger)
    path = bundle / contract.SIGNATURE_FILE
    record = json.loads(path.read_text())
    record["key_fingerprint"] = trusted
    path.write_text(json.dumps(record))
    with pytest.raises(SignatureError, match="^bad signature"):
        verify_manifest(bundle, public)


def test_a_signed_manifest_must_cover_every_device_file(bundle, keys):
    private, public, _ = keys
    manifest = bundle / contract.MANIFEST_FILE
    data = json.loads(manifest.read_text())
    del data["files"][contract.LABELS_FILE]
    manifest.write_text(json.dumps(data))
    sign_manifest(bundle, private)
    with pytest.raises(SignatureError, match=f"does not cover {contract.LABELS_FILE}"):
        verify_manifest(bundle, public)


def test_signature_errors_are_bundle_errors_so_the_puller_rejects_them(bundle, keys):
    with pytest.raises(BundleError):
        verify_manifest(bundle, keys[1])


def test_a_private_key_readable_by_others_is_refused_before_signing(bundle, keys):
    private, _, _ = keys
    private.chmod(0o644)
    with pytest.raises(SigningKeyError, match=f"chmod 600 {private}"):
        sign_manifest(bundle, private)
    assert not (bundle / contract.SIGNATURE_FILE).exists()


def test_keys_in_the_wrong_role_or_of_another_type_are_refused(tmp_path, keys):
    private, public, _ = keys
    public.chmod(0o600)
    with pytest.raises(SigningKeyError, match="is a public key"):
        load_private_key(public)
    with pytest.raises(SigningKeyError, match="is a private key"):
        verify_manifest(tmp_path, private)
    rsa = tmp_path / "rsa.pem"
    rsa.write_bytes(generate_private_key(65537, 2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    rsa.chmod(0o600)
    with pytest.raises(SigningKeyError, match="Ed25519"):
        load_private_key(rsa)
    junk = tmp_path / "junk"
    junk.write_text("not a key")
    with pytest.raises(SigningKeyError, match="not a PEM or OpenSSH key"):
        verify_manifest(tmp_path, junk)
    with pytest.raises(SigningKeyError, match="cannot be read"):
        load_private_key(tmp_path / "missing.key")


def test_openssh_ed25519_keys_work_too(bundle, tmp_path):
    key = Ed25519PrivateKey.generate()
    private = tmp_path / "id_ed25519"
    private.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                          serialization.NoEncryption()))
    private.chmod(0o600)
    public = tmp_path / "id_ed25519.pub"
    public.write_bytes(key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH))
    assert sign_manifest(bundle, private) == verify_manifest(bundle, public) == fingerprint(key)


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edge.signing", *args], cwd=REPO, capture_output=True, text=True, timeout=60)


def test_command_line_keygen_sign_verify_and_exit_codes(bundle, tmp_path):
    private = tmp_path / "cli.key"
    made = _cli("keygen", str(private))
    assert made.returncode == 0 and "fingerprint sha256:" in made.stdout
    assert _cli("sign", str(bundle), "--key", str(private)).returncode == 0
    good = _cli("verify", str(bundle), "--trust-key", f"{private}.pub")
    assert good.returncode == contract.ExitCode.OK and "good signature" in good.stdout

    (bundle / contract.LABELS_FILE).write_text("cow\ndog\n")
    bad = _cli("verify", str(bundle), "--trust-key", f"{private}.pub")
    assert bad.returncode == contract.ExitCode.REJECTED
    assert bad.stderr.strip().splitlines() == [f"rejected: {contract.LABELS_FILE} is not the file the signed manifest.json describes"]

    missing = _cli("verify", str(bundle), "--trust-key", str(tmp_path / "nope.pub"))
    assert missing.returncode == contract.ExitCode.BAD_CONFIG and len(missing.stderr.strip().splitlines()) == 1


def test_the_module_needs_neither_tensorflow_nor_mlflow():
    code = "import sys, edge.signing; print(sorted(m for m in ('tensorflow', 'mlflow', 'keras') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "[]", proc.stderr
