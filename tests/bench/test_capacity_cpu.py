"""bench/capacity_cpu.py: a process tree's CPU seconds count its live descendants and the ones that already exited."""
from __future__ import annotations

import subprocess
import sys
import time

from bench.capacity_cpu import snapshot

SPIN = "import time\nend = time.process_time() + {s}\nwhile time.process_time() < end: pass\n"


def test_a_tree_counts_its_children_alive_and_exited():
    # The parent runs a child to its end (waited for: its parent's cutime), then starts another and spins itself.
    code = (f"import subprocess, sys, time\nsubprocess.run([sys.executable, '-c', {SPIN.format(s=0.4)!r}])\n"
            f"child = subprocess.Popen([sys.executable, '-c', {SPIN.format(s=0.4)!r}])\n{SPIN.format(s=0.3)}"
            "child.wait()\ntime.sleep(30)\n")
    parent = subprocess.Popen([sys.executable, "-c", code])
    try:
        before = snapshot([parent.pid])
        deadline = time.monotonic() + 30
        while snapshot([parent.pid]).trees[parent.pid] - before.trees[parent.pid] < 1.0 and time.monotonic() < deadline:
            time.sleep(0.2)
        spent = snapshot([parent.pid]).minus(before)
    finally:
        parent.kill()
        parent.wait()
    assert 1.0 <= spent.trees[parent.pid] < 3.0  # 0.4 + 0.4 + 0.3 s of spinning, plus three interpreters starting
    assert spent.machine_busy_s >= spent.trees[parent.pid] * 0.9
