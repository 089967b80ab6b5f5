"""The one MLflow server launcher (registry_tools/mlflow_server.py) as scripts call it, and check-arm.sh's refusals."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest
import requests

from tests.conftest import REPO

LAUNCHER = [sys.executable, "-m", "registry_tools.mlflow_server"]


def _launch(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LAUNCHER, *args], cwd=REPO, capture_output=True, text=True, timeout=400,
                          env={**os.environ, **env})


def test_start_prints_the_uri_status_and_stop_end_it(tmp_path):
    started = _launch("start", "--dir", str(tmp_path), "--port", "0")
    try:
        assert started.returncode == 0, started.stderr + (tmp_path / "server.log").read_text()[-2000:]
        (line,) = started.stdout.splitlines()
        uri = line.removeprefix("MLFLOW_TRACKING_URI=")
        assert uri.startswith("http://127.0.0.1:") and requests.get(uri + "/health", timeout=30).ok
        assert (tmp_path / "mlflow.db").is_file() and (tmp_path / "server.pid").is_file()
        assert _launch("ping", uri).returncode == 0
        assert _launch("status", "--dir", str(tmp_path)).returncode == 0
        again = _launch("start", "--dir", str(tmp_path), "--port", "0")  # one server per directory, wherever it is
        assert again.returncode == 0 and again.stdout.startswith("already running"), again.stderr
        assert again.stdout.strip().endswith(f"MLFLOW_TRACKING_URI={uri}")
    finally:
        stopped = _launch("stop", "--dir", str(tmp_path))
    assert stopped.returncode == 0 and "stopped mlflow server" in stopped.stdout
    assert _launch("status", "--dir", str(tmp_path)).returncode == 3
    assert _launch("ping", uri).returncode == 1
    assert not (tmp_path / "server.pid").exists()


def test_a_server_that_cannot_start_is_an_error_with_its_log(tmp_path):
    fake = tmp_path / "mlflow"
    fake.write_text("#!/bin/sh\necho 'no such backend' >&2\nexit 1\n")
    fake.chmod(0o755)
    proc = _launch("start", "--dir", str(tmp_path), "--port", "0", "--mlflow", str(fake), "--timeout", "30")
    assert proc.returncode == 1
    assert "mlflow server exited" in proc.stderr and "no such backend" in proc.stderr
    assert not (tmp_path / "server.pid").exists()


def _check_arm(**env: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(REPO / "scripts" / "check-arm.sh")], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={**os.environ, **env})


def test_check_arm_skips_loudly_only_when_asked():
    proc = _check_arm(EDGEQ_ARM_CHECK="0")
    assert proc.returncode == 0
    assert "SKIPPED: EDGEQ_ARM_CHECK=0" in proc.stdout and "did NOT run" in proc.stderr


@pytest.mark.skipif(os.uname().machine != "x86_64" or os.geteuid() != 0, reason="check-arm.sh skips here (not x86_64 root)")
def test_check_arm_fails_when_it_cannot_run():
    proc = _check_arm(EDGEQ_ARM_ARCHES="sparc")
    assert proc.returncode == 1 and "FAILED: unknown architecture sparc" in proc.stderr
