"""``edgeq-pull`` as a new user runs it: default device id, relative state dir, crontab, credentials in the URI."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from edge import contract
from edge.contract import ExitCode as Exit
from edge.device_info import stable_device_id
from tests.edge.reports import device_report, device_run_id

EDGEQ_PULL = str(Path(sys.executable).with_name("edgeq-pull"))


def _run(args: list[str], env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    full_env.update(env or {})
    return subprocess.run([EDGEQ_PULL, *args], env=full_env, capture_output=True, text=True, timeout=180, cwd=cwd)


def test_the_default_device_id_is_stable_per_machine_and_printed(server, register, rest, fresh_model, tmp_path):
    version = register(fresh_model, "int8")
    proc = _run(["--tracking-uri", server.uri, "--model", fresh_model, "--state-dir", str(tmp_path), "--runs", "3", "--warmup", "0"])
    assert proc.returncode == Exit.OK, proc.stderr
    device = stable_device_id()
    assert device.startswith("edge-") and f"device {device}" in proc.stderr
    assert rest.run_tags(device_run_id(tmp_path))[contract.TAG_HOSTNAME]  # the hostname stays a tag
    assert device_report(rest, tmp_path, version.version)[1][contract.D_STATUS] == contract.STATUS_HEALTHY


def test_a_relative_state_dir_gives_links_that_work_from_anywhere(server, register, fresh_model, tmp_path):
    register(fresh_model, "int8")
    (tmp_path / "work").mkdir()
    proc = _run(["--tracking-uri", server.uri, "--model", fresh_model, "--state-dir", ".edgeq/demo/device",
                 "--device-id", "pi-rel", "--runs", "3", "--warmup", "0"], cwd=tmp_path / "work")
    assert proc.returncode == Exit.OK, proc.stderr
    state = tmp_path / "work" / ".edgeq" / "demo" / "device"
    assert (state / "current" / contract.MODEL_FILE).is_file()  # resolved from the test's own working directory
    assert not os.readlink(state / "current").startswith("/")
    assert str(tmp_path) not in (state / "state.json").read_text()

    cron = _run(["--tracking-uri", server.uri, "--model", fresh_model, "--state-dir", ".edgeq/demo/device", "schedule"],
                cwd=tmp_path / "work")
    assert f"--state-dir {state.resolve()}" in cron.stdout


def _fake_crontab(tmp_path: Path) -> dict[str, str]:
    """A stand-in for cron's ``crontab`` binary (not installed on CI machines): keeps the table in a file."""
    bin_dir, table = tmp_path / "bin", tmp_path / "crontab.txt"
    bin_dir.mkdir()
    script = bin_dir / "crontab"
    script.write_text(f'#!/bin/sh\nif [ "$1" = "-l" ]; then cat {table} 2>/dev/null || exit 1; else cat > {table}; fi\n')
    script.chmod(0o755)
    table.write_text("0 3 * * * /usr/local/bin/backup-edgeq-pull-logs.sh\n")
    return {"PATH": f"{bin_dir}:{os.environ['PATH']}", "TABLE": str(table)}


def test_schedule_install_keeps_other_pullers_and_replaces_its_own_line(tmp_path):
    env = _fake_crontab(tmp_path)
    base = ["--tracking-uri", "http://mlflow.lan:5000"]
    for model, every in (("model-a", "15"), ("model-b", "10"), ("model-a", "5")):
        proc = _run(base + ["--model", model, "--state-dir", str(tmp_path / model), "schedule", "--every", every, "--install"], env)
        assert proc.returncode == 0, proc.stderr
    lines = Path(env["TABLE"]).read_text().splitlines()
    assert lines[0] == "0 3 * * * /usr/local/bin/backup-edgeq-pull-logs.sh"
    assert len(lines) == 3
    # A minute list 5 (or 10) minutes apart: the device's slot in its interval.
    minutes = [[int(m) for m in line.split()[0].split(",")] for line in lines[1:]]
    assert len(minutes[0]) == 12 and {b - a for a, b in zip(minutes[0], minutes[0][1:])} == {5}
    assert len(minutes[1]) == 6 and {b - a for a, b in zip(minutes[1], minutes[1][1:])} == {10}
    assert "--model model-a" in lines[1] and "--every 5" in lines[1] and "--model model-b" in lines[2]


def test_credentials_inside_the_tracking_uri_are_refused_and_never_printed(tmp_path):
    env = _fake_crontab(tmp_path)
    uri = "https://pi-user:s3cret-pass@mlflow.lan:5000"
    for args in (["--model", "m", "--state-dir", str(tmp_path)], ["--model", "m", "schedule", "--install"]):
        proc = _run(["--tracking-uri", uri, *args], env)
        assert proc.returncode == Exit.BAD_CONFIG, proc.stderr
        assert "--credentials-file" in proc.stderr
        assert "s3cret-pass" not in proc.stdout + proc.stderr
    assert "s3cret-pass" not in Path(env["TABLE"]).read_text()


def test_credentials_from_the_environment_never_reach_the_crontab(tmp_path):
    env = {**_fake_crontab(tmp_path), "MLFLOW_TRACKING_USERNAME": "pi", "MLFLOW_TRACKING_PASSWORD": "s3cret-pass",
           "MLFLOW_TRACKING_TOKEN": "tok-s3cret"}
    proc = _run(["--tracking-uri", "https://mlflow.lan", "--model", "m", "schedule", "--install"], env)
    assert proc.returncode == 0, proc.stderr
    table = Path(env["TABLE"]).read_text()
    assert "--model m" in table and "s3cret" not in table and "s3cret" not in proc.stdout


def test_version_prints_the_program_and_its_runtime_and_help_needs_no_server():
    version = _run(["--version"])
    assert version.returncode == 0 and version.stdout.startswith("edgeq-pull ") and "NumPy" in version.stdout
    helped = _run(["--help"])
    assert helped.returncode == 0 and "--model-version" in helped.stdout and "--max-p99-ms" in helped.stdout
