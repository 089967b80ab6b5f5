"""wrk (C, from Debian's packages) replaying the quiet-run mix: a load generator that leaves the cores to the server."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SCRIPT = Path(__file__).with_name("capacity_wrk.lua")


class WrkMissing(RuntimeError):
    """wrk is not installed and could not be installed here."""


def wrk_path() -> str:
    """wrk on PATH, installed from Debian's packages first when missing and this runs as root with apt-get."""
    found = shutil.which("wrk")
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        for cmd in (["apt-get", "install", "-y", "-q", "wrk"], ["apt-get", "update", "-q"], ["apt-get", "install", "-y", "-q", "wrk"]):
            if subprocess.run(cmd, env=env, capture_output=True, timeout=600).returncode == 0 and shutil.which("wrk"):
                break
        found = shutil.which("wrk")
    if not found:
        raise WrkMissing("wrk is not installed: run 'sudo apt-get install -y wrk', or use --generator python")
    return found


@dataclass(frozen=True)
class WrkResult:
    requests: int
    errors: int  # connect, read, write, timeout and answers that were not 2xx/3xx
    seconds: float
    p50_s: float
    p99_s: float
    cpu_s: float  # wrk's own user + system CPU


def run_wrk(uri: str, model: str, ids: int, run_ids_file: Path, connections: int, seconds: float,
            timeout_s: float = 30.0) -> WrkResult:
    """One wrk thread, ``connections`` keep-alive connections, each sending its next request on the previous answer."""
    cmd = [wrk_path(), "-t1", "-c", str(connections), "-d", f"{max(1, round(seconds))}s", "--timeout", f"{timeout_s:g}s",
           "-s", str(SCRIPT), uri, "--", model, str(ids), str(run_ids_file)]
    before = os.times()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + timeout_s + 60)
    after = os.times()
    if proc.returncode != 0 or not proc.stdout.strip():
        raise RuntimeError(f"wrk failed ({proc.returncode}): {(proc.stderr or proc.stdout).strip()[-300:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    errors = sum(out[k] for k in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(out["requests"], errors, out["duration_us"] / 1e6, out["p50_us"] / 1e6, out["p99_us"] / 1e6,
                     (after.children_user - before.children_user) + (after.children_system - before.children_system))
