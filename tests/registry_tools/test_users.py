"""registry_tools.users against a server without authentication: one line saying how to turn it on."""
from __future__ import annotations

import subprocess
import sys

from edge import contract
from tests.conftest import REPO
from tests.servers import free_port


def test_setup_on_a_server_without_authentication_says_how_to_start_one(server, tmp_path):
    password = tmp_path / "admin.password"
    password.write_text("anything\n")
    proc = subprocess.run([sys.executable, "-m", "registry_tools.users", "setup", "--tracking-uri", server.uri,
                           "--model", "m", "--admin-password-file", str(password), "--credentials-dir", str(tmp_path / "c")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == contract.ExitCode.BAD_CONFIG, proc.stderr
    assert proc.stderr.strip().splitlines() == [
        f"Error: {server.uri} has no user management: start it with authentication (scripts/server.sh start --auth)"]
    assert not (tmp_path / "c").exists()


def test_setup_without_the_admin_password_file_names_it(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "registry_tools.users", "setup", "--model", "m",
                           "--admin-password-file", str(tmp_path / "missing")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == contract.ExitCode.BAD_CONFIG
    assert len(proc.stderr.strip().splitlines()) == 1 and str(tmp_path / "missing") in proc.stderr


def test_setup_with_the_server_down_names_its_port_and_how_to_start_it_with_users(tmp_path):
    password = tmp_path / "admin.password"
    password.write_text("anything\n")
    port = free_port()
    proc = subprocess.run([sys.executable, "-m", "registry_tools.users", "setup", "--tracking-uri", f"http://127.0.0.1:{port}",
                           "--model", "m", "--admin-password-file", str(password), "--credentials-dir", str(tmp_path / "c")],
                          cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == contract.ExitCode.UNREACHABLE, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert f"scripts/server.sh start --auth --port {port}" in proc.stderr
