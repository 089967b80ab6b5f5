"""Run a command from a small process and report its wall time and its own peak RSS as JSON.

Linux's ``ru_maxrss`` of a child includes the memory of the process it was forked
from, so a command spawned straight from a benchmark holding TensorFlow would look
gigabytes large. Spawned from this small launcher it measures itself.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def main() -> None:
    out_path, cmd = sys.argv[1], sys.argv[2:]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    with open(out_path, "w", encoding="utf-8") as fh:
        json.dump({"seconds": time.perf_counter() - start, "peak_rss_mb": usage.ru_maxrss / 1024,
                   "returncode": proc.returncode}, fh)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
