"""Peak RSS of one puller run whatever the server sends: ``python -m bench.puller_memory [COMMIT]``.

Side by side in one run: a normal first pull, a pull whose model download is a 1 GiB
body (no Content-Length), and one whose alias answer is a 1 GiB body, each in its own
``edgeq-pull`` process against a loopback MLflow server behind a fault-injecting proxy.
The ratio to the normal pull is what the cap on every body buys; with COMMIT, the
puller of that commit runs the same cases beside today's.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

from bench.fault_proxy import FaultProxy
from edge.proc_status import status_kb
from registry_tools.mlflow_server import MlflowServer
from tests.edge.registry_rest import MlflowRest, register_fixture

REPO = Path(__file__).resolve().parent.parent
BODY = 1 << 30
TIME_LIMIT_S = 120
_WRAPPER = (
    "import sys\n"
    "sys.argv = ['edgeq-pull'] + sys.argv[1:]\n"
    "import edge.cli\n"
    "edge.cli.main()\n"
)


def pull_once(uri: str, model: str, state: Path, code: Path = REPO,
              peak_kb: Callable[[int], int] | None = None) -> tuple[str, float, float]:
    """(exit code or "killed", peak RSS MB, seconds) of one edgeq-pull process running the puller in ``code``.

    Peak RSS is read from the child's /proc entry while it runs (``peak_kb(pid)``, the
    puller's own VmHWM by default), so a run killed at the time limit still has a figure.
    """
    peak_kb = peak_kb or _vm_hwm_kb
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    env["PYTHONPATH"] = str(code)
    args = ["--tracking-uri", uri, "--model", model, "--state-dir", str(state), "--device-id", "bench", "--runs", "20"]
    start = time.perf_counter()
    # cwd: ``python -c`` puts the working directory first on sys.path, before PYTHONPATH
    proc = subprocess.Popen([sys.executable, "-c", _WRAPPER, *args], env=env, cwd=code,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0
    while proc.poll() is None and time.perf_counter() - start < TIME_LIMIT_S:
        peak = max(peak, peak_kb(proc.pid))
        time.sleep(0.02)
    outcome = "killed" if proc.poll() is None else str(proc.returncode)
    if outcome == "killed":
        proc.kill()
        proc.wait()
    return outcome, peak / 1024, time.perf_counter() - start


def _vm_hwm_kb(pid: int) -> int:
    return status_kb(pid, "VmHWM") or 0


def run(before: str | None = None) -> str:
    """``before``: a git commit whose puller runs the same cases too (checked out in a temporary worktree)."""
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        versions = [("now", REPO)]
        if before:
            subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(root / "before"), before],
                           check=True, capture_output=True)
            versions.append((f"at {before[:8]}", root / "before"))
        server = MlflowServer(root / "server").start()
        proxy = FaultProxy(server.uri)
        try:
            rest = MlflowRest(server.uri)
            rows = []
            cases = [("normal first pull", None), ("model body of 1 GiB", "get-artifact"),
                     ("alias answer of 1 GiB", "registered-models/alias")]
            for i, (label, match) in enumerate(cases):
                for j, (which, code) in enumerate(versions):
                    model = f"bench-puller-memory-{i}-{j}"
                    register_fixture(rest, model, "int8")
                    proxy.rules.clear()
                    if match:
                        proxy.add(match, "huge", size=BODY)
                    rows.append((f"{label} ({which})", *pull_once(proxy.uri, model, root / f"state-{i}-{j}", code)))
        finally:
            proxy.close()
            server.stop()
            if before:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(root / "before")], capture_output=True)
    base = rows[0][2]
    command = "python -m bench.puller_memory" + (f" {before}" if before else "")
    lines = [f"## Puller memory under oversized answers (`{command}`)", "",
             "| case | exit | peak RSS MB | × normal | seconds |", "|---|---|---|---|---|"]
    lines += [f"| {label} | {code} | {peak:.0f} | {peak / base:.2f} | {secs:.1f} |" for label, code, peak, secs in rows]
    lines.append(f"\n(killed: still running after {TIME_LIMIT_S} s, holding the lock)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(run(sys.argv[1] if len(sys.argv) > 1 else None))
