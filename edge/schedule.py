"""Crontab line and systemd service+timer that run the puller on an interval."""
from __future__ import annotations

import shlex
import subprocess


def cron_line(command: list[str], every_minutes: int, log_file: str | None = None) -> str:
    if not 1 <= every_minutes <= 59 and every_minutes % 60:
        raise ValueError("--every must be 1..59 minutes or a whole number of hours")
    if every_minutes < 60:
        when = f"*/{every_minutes} * * * *"
    else:
        when = f"0 */{every_minutes // 60} * * *"
    redirect = f" >> {shlex.quote(log_file)} 2>&1" if log_file else " 2>&1 | logger -t edgeq-pull"
    return f"{when} {shlex.join(command)}{redirect}"


def systemd_units(command: list[str], every_minutes: int, user: str | None = None) -> dict[str, str]:
    """{'edgeq-pull.service': …, 'edgeq-pull.timer': …}"""
    user_line = f"User={user}\n" if user else ""
    service = (
        "[Unit]\nDescription=edgeq: pull, benchmark and report the production model\n"
        "Wants=network-online.target\nAfter=network-online.target\n\n"
        f"[Service]\nType=oneshot\n{user_line}EnvironmentFile=-/etc/edgeq/pull.env\n"
        f"ExecStart={shlex.join(command)}\nSuccessExitStatus=3 5\n"
    )
    timer = (
        "[Unit]\nDescription=Run edgeq-pull periodically\n\n"
        f"[Timer]\nOnBootSec=2min\nOnUnitActiveSec={every_minutes}min\nRandomizedDelaySec=30\nPersistent=true\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return {"edgeq-pull.service": service, "edgeq-pull.timer": timer}


def install_cron_line(line: str) -> None:
    """Add ``line`` to the user's crontab, replacing an earlier edgeq-pull line."""
    current = subprocess.run(["crontab", "-l"], capture_output=True, text=True)
    kept = [l for l in current.stdout.splitlines() if "edgeq-pull" not in l] if current.returncode == 0 else []
    subprocess.run(["crontab", "-"], input="\n".join(kept + [line]) + "\n", text=True, check=True)
