"""One figure of a process's ``/proc/<pid>/status`` (VmRSS, VmHWM…), in kB, or None where it cannot be read."""
from __future__ import annotations


def status_kb(pid: int | str, field: str) -> int | None:
    """``field`` (e.g. ``VmRSS``) of process ``pid`` (or ``"self"``) in kB; None when the process or field is gone."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None
