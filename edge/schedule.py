"""Crontab line and systemd service+timer that run the puller on an interval, each device in its own slot of it."""
from __future__ import annotations

import hashlib
import shlex
import subprocess

MARK = "# edgeq-pull:"
# Beyond the sum of its own bounds, what a run may take (start-up, local files, heartbeat).
_RUN_MARGIN_S = 60
_KILL_AFTER_S = 30


def run_limit_s(deadline_s: float, check_timeout_s: float, hook_timeout_s: float) -> int:
    """The longest a run may take: the network deadline, two candidate checks (new and replaced), the hook, a margin.

    The crontab line and the systemd unit stop a run past it, and a later run takes
    over a lock held longer (edge/lock.py).
    """
    return int(deadline_s + 2 * check_timeout_s + hook_timeout_s + _RUN_MARGIN_S)


def schedule_key(model: str, alias: str, state_dir: str) -> str:
    """One scheduled puller per (model, alias, state dir): its crontab line ends with this mark."""
    return MARK + hashlib.sha256(f"{model}\0{alias}\0{state_dir}".encode()).hexdigest()[:12]


def slot_s(device_id: str, every_minutes: int) -> int:
    """The device's offset into its interval, in seconds: a hash of its id, so a device keeps its slot.

    A fleet on one crontab line would fire in the same second; its slots spread it over the interval.
    """
    period = min(every_minutes, 24 * 60) * 60  # cron and systemd calendars repeat daily at most
    return int.from_bytes(hashlib.sha256(device_id.encode()).digest()[:8], "big") % period


def _check_every(every_minutes: int) -> None:
    if not (1 <= every_minutes <= 59 or (every_minutes % 60 == 0 and 24 * 60 % every_minutes == 0)):
        raise ValueError("--every must be 1..59 minutes or a number of hours that divides a day")


def cron_line(command: list[str], every_minutes: int, key: str, log_file: str | None = None,
              limit_s: int | None = None, offset_s: int = 0) -> str:
    """The crontab line; ``offset_s`` (slot_s) picks the minute(s) and a sleep of the remaining seconds."""
    _check_every(every_minutes)
    minute, second = divmod(offset_s % (min(every_minutes, 24 * 60) * 60), 60)
    if every_minutes < 60:
        when = f"{','.join(str(m) for m in range(minute, 60, every_minutes))} * * * *"
    else:
        hours = every_minutes // 60
        hour, minute = divmod(minute, 60)
        when = f"{minute} {hour if hours == 24 else f'{hour}-23/{hours}' if hours > 1 else '*'} * * *"
    redirect = f" >> {shlex.quote(log_file)} 2>&1" if log_file else " 2>&1 | logger -t edgeq-pull"
    bounded = ["timeout", "-k", f"{_KILL_AFTER_S}s", f"{limit_s}s", *command] if limit_s else command
    wait = f"sleep {second}; " if second else ""
    return f"{when} {wait}{shlex.join(bounded)}{redirect} {key}"


def on_calendar(every_minutes: int, offset_s: int = 0) -> str:
    """systemd's OnCalendar= for the interval starting at ``offset_s`` (slot_s) into it."""
    _check_every(every_minutes)
    minute, second = divmod(offset_s % (min(every_minutes, 24 * 60) * 60), 60)
    if every_minutes < 60:
        return f"*-*-* *:{minute:02d}/{every_minutes}:{second:02d}"
    hour, minute = divmod(minute, 60)
    hours = every_minutes // 60
    when = f"{hour:02d}" if hours == 24 else f"{hour:02d}/{hours}" if hours > 1 else "*"
    return f"*-*-* {when}:{minute:02d}:{second:02d}"


def systemd_units(command: list[str], every_minutes: int, user: str | None = None,
                  limit_s: int | None = None, offset_s: int = 0) -> dict[str, str]:
    """{'edgeq-pull.service': …, 'edgeq-pull.timer': …}"""
    user_line = f"User={user}\n" if user else ""
    service = (
        "[Unit]\nDescription=edgeq: pull, benchmark and report the production model\n"
        "Wants=network-online.target\nAfter=network-online.target\n\n"
        f"[Service]\nType=oneshot\n{user_line}EnvironmentFile=-/etc/edgeq/pull.env\n"
        f"ExecStart={shlex.join(command)}\nSuccessExitStatus=3 4 5\n"
        + (f"TimeoutStartSec={limit_s}\nTimeoutStopSec={_KILL_AFTER_S}\n" if limit_s else "")
    )
    # A calendar slot, not OnUnitActiveSec: the device's slot stays where its id puts it, whenever it booted.
    # AccuracySec=1s: systemd's default of a minute would bunch the slots again.
    timer = (
        "[Unit]\nDescription=Run edgeq-pull periodically\n\n"
        f"[Timer]\nOnCalendar={on_calendar(every_minutes, offset_s)}\nAccuracySec=1s\nPersistent=true\n\n"
        "[Install]\nWantedBy=timers.target\n"
    )
    return {"edgeq-pull.service": service, "edgeq-pull.timer": timer}


def merge_crontab(existing: str, line: str, key: str) -> str:
    """``existing`` with the line carrying ``key`` replaced in place (or ``line`` appended); other lines kept."""
    lines = existing.splitlines()
    out, replaced = [], False
    for current in lines:
        if current.rstrip().endswith(key):
            if not replaced:
                out.append(line)
                replaced = True
            continue
        out.append(current)
    if not replaced:
        out.append(line)
    return "\n".join(out) + "\n"


class CrontabError(Exception):
    """The crontab could not be read or written; the message is one line naming the problem and the fix."""


_INSTEAD = "or rerun with --systemd instead of --install for a systemd service and timer"
_TIMEOUT_S = 60


def _crontab(args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(["crontab", *args], input=stdin, capture_output=True, text=True, errors="replace",
                              timeout=_TIMEOUT_S)
    except FileNotFoundError:
        raise CrontabError(f"no crontab command on this machine (cron is not installed): "
                           f"install it (sudo apt-get install cron), {_INSTEAD}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise CrontabError(f"cannot run crontab ({exc}): nothing changed; {_INSTEAD}") from None


def _said(proc: subprocess.CompletedProcess) -> str:
    first = next((line.strip() for line in proc.stderr.splitlines() if line.strip()), "")
    return f"exit {proc.returncode}" + (f": {first}" if first else "")


def install_cron_line(line: str, key: str) -> None:
    """Put ``line`` into the user's crontab, replacing only the line of the same puller.

    Raises CrontabError (nothing changed) when crontab is missing, the current table cannot be read, or the
    new one is refused.
    """
    current = _crontab(["-l"])
    if current.returncode == 0:
        existing = current.stdout
    elif "no crontab" in current.stderr.lower():  # cron's answer for a user without a table yet
        existing = ""
    else:
        # Writing now would replace a table we could not read: other jobs of this user would be lost.
        raise CrontabError(f"cannot read this user's crontab (crontab -l, {_said(current)}): nothing changed; "
                           f"fix that (cron.allow, cron.deny), {_INSTEAD}")
    written = _crontab(["-"], merge_crontab(existing, line, key))
    if written.returncode != 0:
        raise CrontabError(f"crontab refused the new table (crontab -, {_said(written)}): nothing changed; "
                           f"fix that (cron.allow, cron.deny), {_INSTEAD}")
