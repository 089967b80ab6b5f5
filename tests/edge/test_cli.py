"""``edgeq-pull`` as cron runs it: a real process, real exit codes, one log line."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from edge import contract
from edge.lock import exclusive_lock
from tests.conftest import REPO
from tests.servers import free_port

EDGEQ_PULL = str(Path(sys.executable).with_name("edgeq-pull"))


def _run(args: list[str], env: dict[str, str] | None = None, exe: str = EDGEQ_PULL) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    full_env.update(env or {})
    return subprocess.run([exe, *args], env=full_env, capture_output=True, text=True, timeout=300)


@pytest.fixture()
def promoted(register, fresh_model) -> str:
    register(fresh_model, "int8", alias=contract.DEFAULT_ALIAS)
    return fresh_model


def _env(server, model: str, state: Path, **extra: str) -> dict[str, str]:
    return {"MLFLOW_TRACKING_URI": server.uri, "EDGEQ_MODEL": model, "EDGEQ_STATE_DIR": str(state),
            "EDGEQ_DEVICE_ID": "pi-cli", "EDGEQ_RUNS": "10", "EDGEQ_WARMUP": "1", **extra}


def test_help_lists_the_options():
    proc = _run(["--help"])
    assert proc.returncode == 0
    for option in ("--tracking-uri", "--model", "--alias", "--version", "--device-id", "--state-dir", "--runs", "--warmup", "--threads", "schedule"):
        assert option in proc.stdout


def test_run_from_environment_logs_one_line_and_never_the_token(server, promoted, tmp_path):
    proc = _run([], _env(server, promoted, tmp_path, MLFLOW_TRACKING_TOKEN="tok-s3cret-123", EDGEQ_THREADS="1"))
    assert proc.returncode == 0, proc.stderr
    lines = [l for l in (proc.stdout + proc.stderr).splitlines() if l.strip()]
    assert len(lines) == 1 and "reported to run" in lines[0] and lines[0].endswith("(device pi-cli, exit 0)")
    assert "tok-s3cret-123" not in proc.stdout + proc.stderr

    again = _run([], _env(server, promoted, tmp_path))
    assert again.returncode == 0 and "already installed and benchmarked" in again.stderr


def test_unreachable_server_exits_3(tmp_path):
    proc = _run(["--tracking-uri", f"http://127.0.0.1:{free_port()}", "--model", "m", "--state-dir", str(tmp_path)])
    assert proc.returncode == 3 and "cannot reach" in proc.stderr


def test_unknown_model_exits_2(server, tmp_path):
    proc = _run([], _env(server, "no-such-model", tmp_path))
    assert proc.returncode == 2 and "no-such-model" in proc.stderr


def test_credentials_file_readable_by_others_exits_2(server, promoted, tmp_path):
    creds = tmp_path / "creds"
    creds.write_text("MLFLOW_TRACKING_TOKEN=abc\n")
    creds.chmod(0o644)
    proc = _run(["--credentials-file", str(creds)], _env(server, promoted, tmp_path / "state"))
    assert proc.returncode == 2 and "chmod 600" in proc.stderr


def test_second_puller_exits_5_while_the_first_holds_the_lock(server, promoted, tmp_path):
    (tmp_path / "lock").touch()
    with exclusive_lock(tmp_path / "lock"):
        proc = _run([], _env(server, promoted, tmp_path))
    assert proc.returncode == 5 and "another puller" in proc.stderr


def test_second_puller_with_lock_wait_runs_after_the_first(server, promoted, tmp_path):
    released = threading.Event()

    def hold():
        with exclusive_lock(tmp_path / "lock"):
            time.sleep(2)
        released.set()

    holder = threading.Thread(target=hold)
    holder.start()
    time.sleep(0.3)
    proc = _run(["--lock-wait", "30"], _env(server, promoted, tmp_path))
    holder.join()
    assert released.is_set() and proc.returncode == 0, proc.stderr


def test_schedule_prints_cron_and_systemd_lines_without_credentials(server, tmp_path):
    env = {"MLFLOW_TRACKING_URI": server.uri, "MLFLOW_TRACKING_TOKEN": "tok-s3cret-123"}
    cron = _run(["--model", "m", "--device-id", "pi4", "schedule", "--every", "10"], env)
    assert cron.returncode == 0, cron.stderr
    assert cron.stdout.startswith("*/10 * * * * ")
    for pair in (f"--tracking-uri {server.uri}", "--model m", "--device-id pi4"):
        assert pair in cron.stdout
    systemd = _run(["--model", "m", "schedule", "--systemd", "--every", "10"], env)
    assert "OnUnitActiveSec=10min" in systemd.stdout and "ExecStart=" in systemd.stdout
    assert "tok-s3cret-123" not in cron.stdout + systemd.stdout


_BLOCKER = """
import sys
blocked = []
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('tensorflow', 'keras', 'tf_keras', 'mlflow'):
            blocked.append(name)
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
import edge, edge.cli, edge.puller
try:
    edge.cli.main()
except SystemExit as exc:
    code = exc.code
print('BLOCKED', blocked, 'CODE', code)
"""


def test_a_whole_run_never_imports_tensorflow_or_mlflow(server, promoted, tmp_path):
    proc = _run(["-c", _BLOCKER], _env(server, promoted, tmp_path, PYTHONPATH=str(REPO)), exe=sys.executable)
    assert "BLOCKED [] CODE 0" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.slow
def test_fresh_virtualenv_with_only_the_edge_extras_runs_the_puller(server, promoted, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{REPO}[edge]"], capture_output=True, text=True)
    assert install.returncode == 0, install.stderr[-3000:]
    python = str(venv / "bin" / "python")
    for heavy in ("tensorflow", "mlflow", "keras"):
        assert subprocess.run([python, "-c", f"import {heavy}"], capture_output=True).returncode != 0, f"{heavy} got installed"

    proc = _run([], _env(server, promoted, tmp_path / "state"), exe=str(venv / "bin" / "edgeq-pull"))

    assert proc.returncode == 0, proc.stderr
    assert "ai-edge-litert" in proc.stderr
    size_mb = sum(f.stat().st_size for f in venv.rglob("*") if f.is_file()) / 1e6
    print(f"edge virtualenv: {size_mb:.0f} MB")
    assert size_mb < 200
