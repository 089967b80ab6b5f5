"""A full or read-only state dir is a device error (exit 6, one line), never a traceback, and the current model survives.

Each case runs the real edgeq-pull in a mount namespace of its own on a small tmpfs (or a read-only bind mount),
so the filesystem really fills up or refuses writes; nothing outside the namespace is touched.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from edge import contract
from edge.bundle import sha256_file
from edge.contract import ExitCode as Exit
from edge.puller import PullConfig, pull
from tests.conftest import REPO
from tests.edge.registry_rest import copy_bundle, rewrite_manifest

_CLI = "import sys; sys.argv = ['edgeq-pull'] + sys.argv[1:]; from edge.cli import main; main()"


def _namespaces_work() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = ["unshare", "-m", "--propagation", "private", "true"] if os.geteuid() == 0 else \
        ["unshare", "-rm", "--propagation", "private", "true"]
    return subprocess.run(probe, capture_output=True, timeout=10).returncode == 0


pytestmark = pytest.mark.skipif(not _namespaces_work(),
                                reason="needs mount namespaces (unshare -m as root, or user namespaces) for a real small disk")


def _in_namespace(setup: str, state: Path, args: list[str]) -> subprocess.CompletedProcess:
    """edgeq-pull in a private mount namespace after ``setup`` (shell, with $S the state dir) ran there."""
    unshare = ["unshare", "-m", "--propagation", "private"] if os.geteuid() == 0 else ["unshare", "-rm", "--propagation", "private"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(REPO)
    script = f'S="$1"; shift; {setup} && exec "$@"'
    return subprocess.run([*unshare, "sh", "-c", script, "sh", str(state), sys.executable, "-c", _CLI, *args],
                          env=env, capture_output=True, text=True, timeout=180)


def _args(uri: str, model: str, state: Path) -> list[str]:
    return ["--tracking-uri", uri, "--model", model, "--state-dir", str(state), "--device-id", "pi-disk",
            "--runs", "5", "--warmup", "1"]


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, proc.stderr
    return errors[0]


def test_too_little_free_space_is_exit_6_before_any_download(server, register, fresh_model, tmp_path):
    register(fresh_model, "int8")
    state = tmp_path / "state"
    state.mkdir()

    proc = _in_namespace('mount -t tmpfs -o size=4m tmpfs "$S"', state, _args(server.uri, fresh_model, state))

    assert proc.returncode == Exit.STORAGE, proc.stderr
    line = _one_error_line(proc)
    assert "not enough free space" in line and "MB free" in line


def test_a_disk_filling_up_during_the_download_is_exit_6_and_the_current_model_survives(
        server, rest, register, fresh_model, tmp_path):
    register(fresh_model, "int8")
    state = tmp_path / "state"
    state.mkdir()
    big = copy_bundle("int8", tmp_path / "big")
    (big / contract.LABELS_FILE).write_text(os.urandom(10 << 20).hex())  # passes the free-space check, not the disk
    rewrite_manifest(big)
    later = register(fresh_model, "int8", bundle=big, alias=None)
    # In one namespace: install v1 on an 18 MB disk, then follow the alias to the bloated version.
    move = (f'{sys.executable} -c "from tests.edge.registry_rest import MlflowRest; '
            f"MlflowRest('{server.uri}').set_alias('{fresh_model}', 'production', '{later.version}')\"")
    first = f'{sys.executable} -c "{_CLI}" ' + " ".join(_args(server.uri, fresh_model, state)) + " >/dev/null 2>&1"
    proc = _in_namespace(f'mount -t tmpfs -o size=18m tmpfs "$S" && {first} && {move} '
                         f'&& cat "$S/current/{contract.MODEL_FILE}" | sha256sum > "$S/../before.txt"',
                         state, _args(server.uri, fresh_model, state))

    assert proc.returncode == Exit.STORAGE, proc.stderr
    line = _one_error_line(proc)
    assert "No space left" in line and "the current model is untouched" in line
    int8_sha = sha256_file(REPO / "tests/edge/fixtures/int8" / contract.MODEL_FILE)
    assert (tmp_path / "before.txt").read_text().split()[0] == int8_sha


def test_a_read_only_state_dir_is_exit_6_with_one_line(server, register, fresh_model, tmp_path):
    register(fresh_model, "int8")
    state = tmp_path / "state"
    from edge.registry_client import RegistryClient

    assert pull(PullConfig(model=fresh_model, state_dir=state, device_id="pi-disk", runs=5, warmup=1),
                RegistryClient(server.uri)).code == Exit.OK
    installed = sha256_file(state / "current" / contract.MODEL_FILE)

    proc = _in_namespace('mount --bind "$S" "$S" && mount -o remount,ro,bind "$S"', state,
                         _args(server.uri, fresh_model, state))

    assert proc.returncode == Exit.STORAGE, proc.stderr
    assert "cannot write the state dir" in _one_error_line(proc)
    assert sha256_file(state / "current" / contract.MODEL_FILE) == installed
