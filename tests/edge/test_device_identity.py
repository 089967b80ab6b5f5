"""``edgeq-pull identity`` and a state dir that cannot hold the device's key, as a user runs them."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edge import contract, evidence, identity
from edge.contract import ExitCode as Exit
from edge.signing import fingerprint

EDGEQ_PULL = str(Path(sys.executable).with_name("edgeq-pull"))


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    full_env.update(env or {})
    return subprocess.run([EDGEQ_PULL, *args], env=full_env, capture_output=True, text=True, timeout=180)


def test_identity_makes_the_key_once_and_prints_what_the_operator_enrols(tmp_path):
    args = ["--model", "edgeq-digits", "--state-dir", str(tmp_path), "--device-id", "pi-id", "identity"]

    made, again = _run(args), _run(args)

    assert made.returncode == again.returncode == 0, made.stderr + again.stderr
    key = identity.load_or_create(tmp_path)
    public = key.public_text()
    assert public.startswith(evidence.PUBLIC_KEY_PREFIX) and not key.created
    assert made.stdout.splitlines() == [
        "device       pi-id",
        f"public key   {public}",
        f"fingerprint  {fingerprint(key.private)}",
        f"key file     {tmp_path.resolve() / identity.IDENTITY_DIR / identity.KEY_FILE} (made now)",
        "enrol it (the operator, with edgeq):",
        f"  edgeq device enroll pi-id --key {public} --model edgeq-digits",
    ]
    assert again.stdout == made.stdout.replace(" (made now)", "")  # the same key, not a new one
    assert (tmp_path / identity.IDENTITY_DIR / identity.KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_identity_needs_a_model_for_its_state_dir(tmp_path):
    proc = _run(["--state-dir", str(tmp_path), "identity"])
    assert proc.returncode == Exit.BAD_CONFIG and proc.stderr.count("\n") == 1 and "no model" in proc.stderr


def test_a_state_dir_whose_identity_is_a_file_is_exit_6_in_one_line(server, register, fresh_model, tmp_path):
    register(fresh_model, "int8")
    (tmp_path / identity.IDENTITY_DIR).write_text("not a directory")
    env = {"MLFLOW_TRACKING_URI": server.uri, "EDGEQ_MODEL": fresh_model, "EDGEQ_STATE_DIR": str(tmp_path),
           "EDGEQ_DEVICE_ID": "pi-id"}

    shown, pulled = _run(["identity"], env), _run([], env)

    for proc in (shown, pulled):  # and neither leaves the lock looking like a crashed run's to the next
        assert proc.returncode == contract.ExitCode.STORAGE, proc.stderr
        assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
        assert "identity is not a directory" in proc.stderr
    assert not (tmp_path / "current").exists()  # stopped before anything was downloaded
