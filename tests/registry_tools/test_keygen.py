"""``edgeq keygen``: a signing key pair without any server, and never over an existing key."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from edge import contract
from edge.signing import fingerprint
from tests.servers import free_port

EDGEQ = str(Path(sys.executable).with_name("edgeq"))


def test_keygen_needs_no_server_and_never_overwrites(tmp_path):
    key = tmp_path / "signing.key"
    env_uri = ["--tracking-uri", f"http://127.0.0.1:{free_port()}"]  # nothing listens there
    made = subprocess.run([EDGEQ, *env_uri, "keygen", str(key)], capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    assert f"fingerprint {fingerprint(key)}" in made.stdout
    assert key.stat().st_mode & 0o777 == 0o600 and fingerprint(Path(f"{key}.pub")) == fingerprint(key)

    before = key.read_bytes()
    again = subprocess.run([EDGEQ, *env_uri, "keygen", str(key)], capture_output=True, text=True, timeout=120)
    assert again.returncode == contract.ExitCode.BAD_CONFIG and "already exists" in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1 and key.read_bytes() == before
