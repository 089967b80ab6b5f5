"""A device started with --trust-key installs only versions whose manifest the user's key signed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge import contract
from edge.contract import ExitCode as Exit
from edge.puller import PullConfig, pull
from edge.signing import keygen, sign_manifest
from edge.state import DeviceState
from tests.edge.registry_rest import copy_bundle
from tests.edge.reports import device_report

EDGEQ_PULL = str(Path(sys.executable).with_name("edgeq-pull"))


@pytest.fixture()
def keys(tmp_path) -> dict[str, Path]:
    keygen(tmp_path / "user.key")
    keygen(tmp_path / "other.key")
    return {"user": tmp_path / "user.key", "user.pub": tmp_path / "user.key.pub", "other": tmp_path / "other.key"}


def _signed(tmp_path: Path, variant: str, key: Path, name: str) -> Path:
    bundle = copy_bundle(variant, tmp_path / name)
    sign_manifest(bundle, key)
    return bundle


def _config(state: Path, model: str, trust: Path) -> PullConfig:
    return PullConfig(model=model, state_dir=state, device_id="pi-trust", runs=5, warmup=1, trust_key=trust)


def test_a_version_signed_by_the_trusted_key_installs(register, registry, fresh_model, keys, tmp_path):
    version = register(fresh_model, "int8", bundle=_signed(tmp_path, "int8", keys["user"], "signed"))
    outcome = pull(_config(tmp_path / "s", fresh_model, keys["user.pub"]), registry)
    assert (outcome.code, outcome.version) == (Exit.OK, version.version), outcome.message
    assert (tmp_path / "s" / "current" / contract.SIGNATURE_FILE).is_file()


@pytest.mark.parametrize("case,expected", [
    ("unsigned", "unsigned"),
    ("other key", "signed by another key"),
    ("tampered signature", "bad signature"),
])
def test_unsigned_or_badly_signed_versions_are_rejected_and_the_old_model_keeps_serving(
        case, expected, register, registry, rest, fresh_model, keys, tmp_path):
    serving = register(fresh_model, "fp32", bundle=_signed(tmp_path, "fp32", keys["user"], "good"))
    assert pull(_config(tmp_path / "s", fresh_model, keys["user.pub"]), registry).code == Exit.OK
    if case == "unsigned":
        bundle = copy_bundle("int8", tmp_path / "bad")
    else:
        bundle = _signed(tmp_path, "int8", keys["other" if case == "other key" else "user"], "bad")
        if case == "tampered signature":
            record = json.loads((bundle / contract.SIGNATURE_FILE).read_text())
            record["signature"] = record["signature"][:8][::-1] + record["signature"][8:]
            (bundle / contract.SIGNATURE_FILE).write_text(json.dumps(record))
    bad = register(fresh_model, "int8", bundle=bundle)

    outcome = pull(_config(tmp_path / "s", fresh_model, keys["user.pub"]), registry)

    assert outcome.code == Exit.REJECTED and expected in outcome.message, outcome.message
    assert DeviceState(tmp_path / "s").current().version == serving.version
    assert expected in device_report(rest, tmp_path / "s", bad.version)[1][contract.D_REASON]


def test_a_private_key_given_as_trust_key_is_bad_configuration(server, fresh_model, keys, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    proc = subprocess.run([EDGEQ_PULL, "--tracking-uri", server.uri, "--model", fresh_model, "--state-dir", str(tmp_path),
                           "--trust-key", str(keys["user"])], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == Exit.BAD_CONFIG and "public key" in proc.stderr and "Traceback" not in proc.stderr
