"""CPU seconds spent by a process tree (a server and its workers, a PostgreSQL cluster) and by the whole machine, from /proc."""
from __future__ import annotations

import os
from dataclasses import dataclass

_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> dict[int, tuple[int, int]]:
    """pid -> (parent pid, CPU ticks of the process and of its children it has waited for)."""
    found: dict[int, tuple[int, int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        # utime, stime, cutime, cstime: a worker that exited is counted in its parent's cutime/cstime.
        found[int(entry)] = (int(fields[1]), sum(int(f) for f in fields[11:15]))
    return found


@dataclass(frozen=True)
class Snapshot:
    trees: dict[int, float]  # root pid -> CPU seconds of it and every descendant
    machine_busy_s: float  # all cores, every process

    def minus(self, before: "Snapshot") -> "Snapshot":
        return Snapshot({pid: s - before.trees.get(pid, 0.0) for pid, s in self.trees.items()},
                        self.machine_busy_s - before.machine_busy_s)


def snapshot(roots: list[int]) -> Snapshot:
    """CPU seconds so far of each tree rooted at ``roots``, and of the machine."""
    processes = _processes()
    children: dict[int, list[int]] = {}
    for pid, (parent, _) in processes.items():
        children.setdefault(parent, []).append(pid)
    trees = {}
    for root in roots:
        ticks, todo = 0, [root]
        while todo:
            pid = todo.pop()
            ticks += processes.get(pid, (0, 0))[1]
            todo += children.get(pid, [])
        trees[root] = ticks / _TICK
    return Snapshot(trees, machine_busy_s())


def machine_busy_s() -> float:
    """CPU seconds all cores spent not idle since boot."""
    with open("/proc/stat", encoding="ascii") as fh:
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in fh.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / _TICK


def postmaster_pid(data_dir: str) -> int:
    """The PostgreSQL cluster's main process (first line of postmaster.pid)."""
    with open(os.path.join(data_dir, "postmaster.pid"), encoding="ascii") as fh:
        return int(fh.readline())
