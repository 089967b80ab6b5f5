"""scripts/server.sh with the embedded default (SQLite, served artifacts): start, status, stop, the HTTP server, bad options."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import requests

from bench.capacity import GTHREAD_OPTS, GTHREAD_THREADS
from tests.conftest import REPO
from tests.servers import free_port

SERVER_SH = str(REPO / "scripts" / "server.sh")


def _sh(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", SERVER_SH, *args], cwd=REPO, capture_output=True, text=True, timeout=400)


def _mlflow_process(root: Path) -> tuple[list[str], dict[str, str]]:
    """The command line and environment of the `mlflow server` process server.sh started in ``root``."""
    pid = (root / "server.pid").read_text().strip()
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    env = dict(e.split("=", 1) for e in Path(f"/proc/{pid}/environ").read_bytes().decode().split("\0") if "=" in e)
    return argv, env


def test_sqlite_server_starts_once_reports_its_status_and_stops(tmp_path):
    port = free_port()
    try:
        started = _sh("start", "--dir", str(tmp_path), "--port", str(port), "--devices", "60000")
        assert started.returncode == 0, started.stderr + (tmp_path / "server.log").read_text()[-2000:]
        assert "WARNING: 60000 devices on SQLite: one SQLite server held 45000" in started.stderr
        assert started.stdout.splitlines()[0] == f"MLFLOW_TRACKING_URI=http://127.0.0.1:{port}"
        assert requests.get(f"http://127.0.0.1:{port}/api/2.0/mlflow/experiments/search", params={"max_results": 1}, timeout=30).ok
        assert (tmp_path / "mlflow.db").is_file()
        # gunicorn's threaded workers with the options bench/capacity.py measured, a pooled connection per thread
        argv, env = _mlflow_process(tmp_path)
        assert argv[argv.index("--gunicorn-opts") + 1] == GTHREAD_OPTS
        assert env["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] == str(GTHREAD_THREADS)
        # a GET past gunicorn's default 4 KiB request line, as uvicorn takes it
        long_filter = f"name LIKE '%{'x' * 5000}%'"
        assert requests.get(f"http://127.0.0.1:{port}/api/2.0/mlflow/registered-models/search",
                            params={"filter": long_filter}, timeout=30).status_code == 200
        assert '"GET /api/2.0/mlflow/experiments/search' in (tmp_path / "server.log").read_text()  # the access log

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


def test_http_server_uvicorn_starts_mlflows_default(tmp_path):
    port = free_port()
    try:
        started = _sh("start", "--dir", str(tmp_path), "--port", str(port), "--http-server", "uvicorn")
        assert started.returncode == 0, started.stderr + (tmp_path / "server.log").read_text()[-2000:]
        assert requests.get(f"http://127.0.0.1:{port}/health", timeout=30).ok
        argv, env = _mlflow_process(tmp_path)
        assert "--gunicorn-opts" not in argv and "MLFLOW_SQLALCHEMYSTORE_POOL_SIZE" not in env
        assert "Uvicorn running" in (tmp_path / "server.log").read_text()
    finally:
        _sh("stop", "--dir", str(tmp_path))


@pytest.mark.parametrize("args, message", [
    (["start", "--backend", "mysql"], "--backend must be sqlite or postgres, got 'mysql'"),
    (["start", "--port", "http"], "--port must be a number, got 'http'"),
    (["start", "--devices", "many"], "--devices must be a number, got 'many'"),
    (["start", "--http-server", "nginx"], "--http-server must be gthread or uvicorn, got 'nginx'"),
    (["start", "--frobnicate"], "unknown option --frobnicate"),
    (["restart"], "unknown command 'restart'"),
])
def test_bad_options_are_one_line_and_exit_2(tmp_path, args, message):
    proc = _sh(*args, "--dir", str(tmp_path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1 and message in proc.stderr
    assert not (tmp_path / "server.pid").exists()
