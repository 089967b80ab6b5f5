"""edge/proc_status.py: figures of /proc/<pid>/status, None where they cannot be read."""
from __future__ import annotations

import subprocess
import sys

from edge.proc_status import status_kb


def test_reads_a_live_process_and_its_peak():
    child = subprocess.Popen([sys.executable, "-c", "import sys; b = bytearray(64 << 20); print('ready', flush=True); "
                              "sys.stdin.read()"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "ready"
        rss = status_kb(child.pid, "VmRSS")
        hwm = status_kb(child.pid, "VmHWM")  # read second: the peak so far is at least the resident size read before
        assert hwm is not None and hwm > 64 << 10, hwm
        assert rss is not None and 0 < rss <= hwm, (rss, hwm)
    finally:
        child.communicate("")
    assert status_kb("self", "VmRSS") > 0


def test_a_gone_process_or_field_is_none():
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    assert status_kb(int(done.stdout), "VmRSS") is None
    assert status_kb("self", "NoSuchField") is None
