"""``edgeq-pull schedule --install`` where cron is missing, refuses this user, or refuses the table: one line, exit 2."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from edge.contract import ExitCode

EDGEQ_PULL = str(Path(sys.executable).with_name("edgeq-pull"))
OTHER_JOB = "0 3 * * * /usr/local/bin/backup.sh\n"


def _install(bin_dir: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    env["PATH"] = str(bin_dir)  # only what the test put there: no crontab unless it wrote one
    return subprocess.run([EDGEQ_PULL, "--tracking-uri", "http://mlflow.lan:5000", "--model", "m", "--device-id", "pi-1",
                           "--state-dir", str(bin_dir.parent / "state"), "schedule", "--install"],
                          env=env, capture_output=True, text=True, timeout=120)


def _crontab(tmp_path: Path, list_script: str, write_script: str) -> tuple[Path, Path]:
    """A stand-in for cron's ``crontab`` (this machine has none): ``-l`` and ``-`` run the given shell lines."""
    bin_dir, table = tmp_path / "bin", tmp_path / "crontab.txt"
    bin_dir.mkdir()
    (bin_dir / "cat").symlink_to(shutil.which("cat"))
    table.write_text(OTHER_JOB)
    script = bin_dir / "crontab"
    script.write_text(f'#!/bin/sh\nTABLE={table}\nif [ "$1" = "-l" ]; then\n{list_script}\nelse\n{write_script}\nfi\n')
    script.chmod(0o755)
    return bin_dir, table


def _one_line_refusal(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == ExitCode.BAD_CONFIG, proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.splitlines()) == 1, proc.stderr
    assert proc.stdout == ""  # no line that looks installed
    assert "--systemd" in proc.stderr  # the alternative that needs no cron
    return proc.stderr


def test_no_crontab_command_is_one_line_naming_cron_and_the_systemd_timer(tmp_path):
    empty = tmp_path / "bin"
    empty.mkdir()
    said = _one_line_refusal(_install(empty))
    assert "no crontab command" in said and "sudo apt-get install cron" in said


def test_a_crontab_that_cannot_be_read_is_left_as_it_was(tmp_path):
    bin_dir, table = _crontab(tmp_path, 'echo "You (pi) are not allowed to use this program (crontab)" >&2; exit 1',
                              'cat > "$TABLE"')
    said = _one_line_refusal(_install(bin_dir))
    assert "cannot read" in said and "not allowed" in said
    assert table.read_text() == OTHER_JOB  # not replaced by a table holding only the puller


def test_a_refused_table_is_one_line(tmp_path):
    bin_dir, table = _crontab(tmp_path, 'cat "$TABLE"',
                              'echo "errors in crontab file, can\'t install." >&2; exit 1')
    said = _one_line_refusal(_install(bin_dir))
    assert "refused" in said and "errors in crontab file" in said
    assert table.read_text() == OTHER_JOB


def test_a_user_without_a_crontab_yet_gets_one(tmp_path):
    bin_dir, table = _crontab(tmp_path, 'echo "no crontab for pi" >&2; exit 1', 'cat > "$TABLE"')
    proc = _install(bin_dir)
    assert proc.returncode == ExitCode.OK, proc.stderr
    assert proc.stderr == "installed in crontab\n"
    assert table.read_text() == proc.stdout and "--model m" in proc.stdout


def test_install_with_systemd_is_refused_instead_of_ignored(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    for extra in (["--install"], ["--log-file", str(tmp_path / "pull.log")]):
        proc = subprocess.run([EDGEQ_PULL, "--tracking-uri", "http://mlflow.lan:5000", "--model", "m", "--device-id",
                               "pi-1", "--state-dir", str(tmp_path / "state"), "schedule", "--systemd", *extra],
                              env=env, capture_output=True, text=True, timeout=120)
        assert "is for cron: with --systemd, save the printed units" in _one_line_refusal(proc)
