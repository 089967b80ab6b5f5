"""``edgeq-pull`` as cron runs it: a real process, real exit codes, one log line."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge import contract
from edge.lock import exclusive_lock
from edge.schedule import slot_s
from tests.conftest import REPO
from tests.edge.registry_rest import disagreeing_bundle
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


def test_help_lists_the_options_and_the_exit_codes():
    proc = _run(["--help"])
    assert proc.returncode == 0
    for option in ("--tracking-uri", "--model", "--alias", "--version", "--device-id", "--state-dir", "--runs", "--warmup",
                   "--threads", "--min-sample-accuracy PERCENT", "--max-p99-ms [DEVICE=]MS", "--max-rss-mb",
                   "--check-timeout", "schedule"):
        assert option in proc.stdout
    flat = " ".join(proc.stdout.split())  # as help wraps it
    assert "a higher peak is a refusal. [default: 512.0; x>0]" in flat and "then it is refused. [default: 300.0; x>=1]" in flat
    codes = proc.stdout.split("\nExit codes:\n")[1]
    for code, meaning in contract.EXIT_MEANINGS.items():
        assert f"  {int(code)}  {meaning.split()[0]}" in codes, code


@pytest.mark.parametrize("command", ["schedule", "doctor"])
def test_a_subcommands_help_needs_no_server_and_no_model(command):
    proc = _run([command, "--help"])  # no MLFLOW_ or EDGEQ_ variable set
    assert proc.returncode == 0 and proc.stdout.startswith(f"Usage: edgeq-pull {command} "), proc.stderr
    ran = _run(["schedule"])
    assert ran.returncode == contract.ExitCode.BAD_CONFIG and "no tracking server" in ran.stderr


def test_min_sample_accuracy_is_percent(server, promoted, tmp_path):
    proc = _run(["--min-sample-accuracy", "50", "--check-timeout", "120", "--max-rss-mb", "400"], _env(server, promoted, tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "deprecated" not in proc.stderr
    over = _run(["--min-sample-accuracy", "101"], _env(server, promoted, tmp_path))
    assert over.returncode == contract.ExitCode.BAD_CONFIG and "0<=x<=100" in over.stderr


def test_min_sample_accuracy_as_an_old_fraction_still_works_with_a_notice(server, register, fresh_model, tmp_path):
    # Shifted labels score about 0 on the sample; registered at 5 %, only --min-sample-accuracy can refuse it.
    register(fresh_model, "int8", bundle=disagreeing_bundle("int8", tmp_path / "bundle"), metrics={contract.M_ACCURACY: 0.05})
    proc = _run(["--min-sample-accuracy", "0.5"], _env(server, fresh_model, tmp_path / "state"))
    assert proc.returncode == contract.ExitCode.REJECTED, proc.stderr
    notice, *log = proc.stderr.splitlines()
    assert notice == ("edgeq-pull: --min-sample-accuracy 0.5 (a 0–1 fraction) is deprecated and will be removed in the "
                      "next release; use --min-sample-accuracy 50 (percent)")
    assert len(log) == 1 and "is below --min-sample-accuracy 50;" in log[0] + ";", log  # read as 50 %, not 0.5 %


def test_max_p99_ms_takes_device_entries_as_edgeq_does(server, promoted, tmp_path):
    own = _run(["--max-p99-ms", "all=0.000001", "--max-p99-ms", "pi-cli=100000", "--max-p99-ms", "pi-other=0.000001"],
               _env(server, promoted, tmp_path / "own"))
    assert own.returncode == 0, own.stderr  # this device's own entry wins over all=
    assert "--max-p99-ms pi-other=0.000001 is for device pi-other, not this one (pi-cli): ignored" in own.stderr

    plain = _run([], _env(server, promoted, tmp_path / "plain", EDGEQ_MAX_P99_MS="0.000001 pi-other=100000"))
    assert plain.returncode == contract.ExitCode.REJECTED and "above --max-p99-ms 1e-06" in plain.stderr, plain.stderr


@pytest.mark.parametrize("spec", ["fast", "pi-cli=", "=5", "all=-1", "0"])
def test_a_bad_max_p99_ms_is_one_line_and_exit_2(spec, tmp_path):
    proc = _run(["--tracking-uri", f"http://127.0.0.1:{free_port()}", "--model", "m", "--state-dir", str(tmp_path),
                 "--device-id", "pi-cli", "--max-p99-ms", spec])
    assert proc.returncode == contract.ExitCode.BAD_CONFIG
    assert proc.stderr.count("\n") == 1 and "expected MS, all=MS or DEVICE=MS" in proc.stderr, proc.stderr


def test_python_m_edge_signing_keygen_still_works_and_names_edgeq_keygen(tmp_path):
    key = tmp_path / "signing.key"
    proc = subprocess.run([sys.executable, "-m", "edge.signing", "keygen", str(key)], cwd=REPO, capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0 and "fingerprint sha256:" in proc.stdout and key.is_file()
    assert proc.stderr.splitlines() == [f"python -m edge.signing keygen is deprecated and will be removed in the next "
                                        f"release; use edgeq keygen {key}"]


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


def _has_open(pid: int, path: Path) -> bool:
    """Whether process ``pid`` holds a descriptor on ``path`` (it has reached the lock and is trying it)."""
    try:
        names = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for name in names:
        try:
            if os.readlink(f"/proc/{pid}/fd/{name}") == str(path):
                return True
        except OSError:
            continue
    return False


def test_second_puller_with_lock_wait_waits_for_the_first_then_runs(server, promoted, tmp_path):
    # Proof that it waited, not just that it ended well: while this test holds the lock the puller
    # has opened the lock file and is still running; only after the release does it finish, with 0.
    lock = tmp_path / "lock"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    env.update(_env(server, promoted, tmp_path))
    with exclusive_lock(lock):
        proc = subprocess.Popen([EDGEQ_PULL, "--lock-wait", "120"], env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 120
            while not _has_open(proc.pid, lock):
                assert proc.poll() is None, f"exited {proc.returncode} before reaching the lock: {proc.communicate()[1]}"
                assert time.monotonic() < deadline, "the second puller never reached the lock"
                time.sleep(0.05)
            time.sleep(1.5)  # many lock attempts (one each 0.1 s), all refused
            assert proc.poll() is None, f"did not wait for the lock: exit {proc.returncode} {proc.communicate()[1]}"
        except BaseException:
            proc.kill()
            proc.communicate()
            raise
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    assert "another puller" not in stderr


def test_schedule_prints_cron_and_systemd_lines_without_credentials(server, tmp_path):
    env = {"MLFLOW_TRACKING_URI": server.uri, "MLFLOW_TRACKING_TOKEN": "tok-s3cret-123"}
    cron = _run(["--model", "m", "--device-id", "pi4", "schedule", "--every", "10"], env)
    assert cron.returncode == 0, cron.stderr
    minute, second = divmod(slot_s("pi4", 10), 60)
    wait = f"sleep {second}; " if second else ""
    assert cron.stdout.startswith(f"{','.join(str(m) for m in range(minute, 60, 10))} * * * * {wait}"), cron.stdout
    for pair in (f"--tracking-uri {server.uri}", "--model m", "--device-id pi4"):
        assert pair in cron.stdout
    systemd = _run(["--model", "m", "--device-id", "pi4", "schedule", "--systemd", "--every", "10"], env)
    assert f"OnCalendar=*-*-* *:{minute:02d}/10:{second:02d}" in systemd.stdout and "ExecStart=" in systemd.stdout
    assert "tok-s3cret-123" not in cron.stdout + systemd.stdout


def test_schedule_writes_the_new_spellings_of_old_ones(tmp_path):
    env = {"MLFLOW_TRACKING_URI": f"http://127.0.0.1:{free_port()}", "EDGEQ_VERSION": "3",
           "EDGEQ_MIN_SAMPLE_ACCURACY": "0.9"}  # no server needed to print the line
    cron = _run(["--model", "m", "--device-id", "pi4", "--max-p99-ms", "all=50", "--max-p99-ms", "pi4=80",
                 "--check-timeout", "60", "--max-rss-mb", "300", "schedule"], env)
    assert cron.returncode == 0, cron.stderr
    for pair in ("--model-version 3", "--min-sample-accuracy 90.0", "--max-p99-ms all=50 --max-p99-ms pi4=80",
                 "--check-timeout 60.0", "--max-rss-mb 300.0"):
        assert pair in cron.stdout, pair
    assert cron.stderr.splitlines() == [
        "edgeq-pull: EDGEQ_VERSION is deprecated and will be removed in the next release; use EDGEQ_MODEL_VERSION (--model-version)",
        "edgeq-pull: EDGEQ_MIN_SAMPLE_ACCURACY=0.9 (a 0–1 fraction) is deprecated and will be removed in the next release; "
        "use EDGEQ_MIN_SAMPLE_ACCURACY=90 (percent)",
    ]


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


# What pip says when it cannot reach the package index (as opposed to a requirement that cannot be met).
_NO_INDEX = ("connection broken by", "NewConnectionError", "Failed to establish a new connection",
             "Temporary failure in name resolution", "Name or service not known", "Network is unreachable",
             "ProxyError", "ConnectTimeoutError", "Read timed out")


@pytest.mark.slow
@pytest.mark.network
def test_fresh_virtualenv_with_only_the_edge_extras_runs_the_puller(server, promoted, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    # PIP_RETRIES: the pip that builds the checkout in isolation (setuptools from the index) retries once too.
    install = subprocess.run([str(venv / "bin" / "pip"), "install", "-q", f"{REPO}[edge]"], capture_output=True,
                             text=True, timeout=1200, env=dict(os.environ, PIP_RETRIES="1"))
    if install.returncode != 0 and any(sign in install.stderr for sign in _NO_INDEX):
        reason = next(line for line in install.stderr.splitlines() if any(sign in line for sign in _NO_INDEX))
        pytest.skip(f"needs the package index, unreachable here (pip: {reason.strip()[:300]})")
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
