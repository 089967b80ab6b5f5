"""scripts/server.sh with the embedded default (SQLite, served artifacts): start, status, stop, bad options."""
from __future__ import annotations

import subprocess

import pytest
import requests

from tests.conftest import REPO
from tests.servers import free_port

SERVER_SH = str(REPO / "scripts" / "server.sh")


def _sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SERVER_SH, *args], cwd=REPO, capture_output=True, text=True, timeout=400)


def test_sqlite_server_starts_once_reports_its_status_and_stops(tmp_path):
    port = free_port()
    try:
        started = _sh("start", "--dir", str(tmp_path), "--port", str(port), "--devices", "60000")
        assert started.returncode == 0, started.stderr + (tmp_path / "server.log").read_text()[-2000:]
        assert "WARNING: 60000 devices on SQLite: one SQLite server held 45000" in started.stderr
        assert started.stdout.splitlines()[0] == f"MLFLOW_TRACKING_URI=http://127.0.0.1:{port}"
        assert requests.get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=30).ok
        assert (tmp_path / "mlflow.db").is_file()

        again = _sh("start", "--dir", str(tmp_path), "--port", str(port))
        assert again.returncode == 0 and again.stdout.startswith("already running")
        status = _sh("status", "--dir", str(tmp_path))
        assert status.returncode == 0 and "running" in status.stdout and "backend sqlite, auth off" in status.stdout
    finally:
        stopped = _sh("stop", "--dir", str(tmp_path))
    assert stopped.returncode == 0 and "stopped mlflow server" in stopped.stdout
    assert _sh("status", "--dir", str(tmp_path)).returncode == 3
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://127.0.0.1:{port}/health", timeout=5)


@pytest.mark.parametrize("args, message", [
    (["start", "--backend", "mysql"], "--backend must be sqlite or postgres, got 'mysql'"),
    (["start", "--port", "http"], "--port must be a number, got 'http'"),
    (["start", "--devices", "many"], "--devices must be a number, got 'many'"),
    (["start", "--frobnicate"], "unknown option --frobnicate"),
    (["restart"], "unknown command 'restart'"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, args, message):
    proc = _sh(*args, "--dir", str(tmp_path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert not (tmp_path / "server.pid").exists()
