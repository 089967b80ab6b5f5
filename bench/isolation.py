"""What running the candidate in a bounded child costs: ``python -m bench.isolation COMMIT``.

Side by side in one run, each in its own ``edgeq-pull`` process against one loopback
MLflow server: a first pull (download, check, benchmark, report) and no-change runs
(the cron case: resolve, nothing to do, heartbeat), with today's puller and with the
puller of COMMIT (checked out in a temporary worktree). Seconds are the median of the
repeats; memory is the peak of the puller's whole process tree (the puller and, now,
the candidate's child), sampled every 20 ms.
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.puller_memory import pull_once
from edge.proc_status import status_kb
from registry_tools.mlflow_server import MlflowServer
from tests.edge.registry_rest import MlflowRest, register_fixture

REPO = Path(__file__).resolve().parent.parent
REPEATS = 5


def _tree_rss_kb(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        total += status_kb(p, "VmRSS") or 0
        try:
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children", encoding="ascii") as fh:
                    todo += [int(c) for c in fh.read().split()]
        except (OSError, ValueError):
            continue
    return total


def run(before: str) -> str:
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(root / "before"), before],
                       check=True, capture_output=True)
        versions = [("now", REPO), (f"at {before[:8]}", root / "before")]
        server = MlflowServer(root / "server").start()
        try:
            rest = MlflowRest(server.uri)
            for j, (which, code) in enumerate(versions):
                model = f"bench-isolation-{j}"
                register_fixture(rest, model, "int8")
                firsts = [pull_once(server.uri, model, root / f"state-{j}-{i}", code, _tree_rss_kb) for i in range(REPEATS)]
                again = [pull_once(server.uri, model, root / f"state-{j}-0", code, _tree_rss_kb) for _ in range(REPEATS)]
                for label, runs in (("first pull", firsts), ("no-change run", again)):
                    rows.append((label, which, {r[0] for r in runs}, max(r[1] for r in runs),
                                 statistics.median(r[2] for r in runs)))
        finally:
            server.stop()
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(root / "before")],
                           capture_output=True)
    base = {label: secs for label, which, _, _, secs in rows if which != "now"}
    lines = [f"## Candidate isolation: what the child process costs (`python -m bench.isolation {before}`)", "",
             f"int8 fixture bundle, `--runs 20`, median of {REPEATS} runs each, peak RSS of the process tree.", "",
             "| run | puller | exit | peak RSS MB | seconds | × before |", "|---|---|---|---|---|---|"]
    lines += [f"| {label} | {which} | {','.join(sorted(codes))} | {peak:.0f} | {secs:.2f} | {secs / base[label]:.2f} |"
              for label, which, codes, peak, secs in rows]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: python -m bench.isolation COMMIT   (the puller to compare with, e.g. HEAD~1)")
    print(run(sys.argv[1]))
