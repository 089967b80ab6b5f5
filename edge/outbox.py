"""Reports that could not reach the server wait here, one JSON file each, named by their time.

A report the server refuses (its run was deleted, the request is invalid) can never
be sent: it moves to ``dead-letter/`` with the reason beside it, so it neither blocks
the reports behind it nor the run. A file that does not load into a well-typed Report
(damage, another version's puller) moves to ``quarantine/``. Both are kept for a
person to look at; nothing is deleted.

A run sends a backlog newest first and within a budget (FLUSH_MAX_REPORTS, a share of
its deadline); the rest wait for later runs. A report queued under an id (report_id)
replaces one waiting under the same id, and stays in ``unrecorded/`` until the run has
recorded on disk what it reports: a run killed in between finds it there, and sends the
very same report (same time, same figures) again, which the server stores once.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import stat
import time
import uuid
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path

from edge import contract
from edge.fsutil import atomic_write
from edge.registry_client import AuthError, Nonsense, Refused, RegistryClient, ServerUnreachable

log = logging.getLogger("edgeq-pull")

DEAD_LETTER = "dead-letter"
QUARANTINE = "quarantine"
UNRECORDED = "unrecorded"
# A run sends at most this many queued reports, in at most this share of its --deadline: a backlog (a device
# offline for weeks) never keeps it from its own update; the older reports wait for later runs.
FLUSH_MAX_REPORTS = 100
FLUSH_DEADLINE_SHARE = 0.25
_MAX_REPORT_BYTES = 1 << 20  # a report is a few KB; a larger file is not one this puller wrote
_INT64 = 1 << 63


@dataclass(frozen=True)
class Report:
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]
    timestamp_ms: int
    step: int = 0
    params: dict[str, str] = field(default_factory=dict)  # write-once: signed evidence and its marker


@dataclass(frozen=True)
class FlushResult:
    sent: int = 0
    dead_lettered: int = 0
    quarantined: int = 0
    waiting: int = 0
    problems: tuple[str, ...] = field(default=())
    deferred: int = 0  # left for later runs by the flush's budget

    def note(self) -> str:
        parts = [f"sent {self.sent} queued report(s)"] if self.sent else []
        if self.dead_lettered:
            parts.append(f"{self.dead_lettered} refused report(s) moved to {DEAD_LETTER}/")
        if self.quarantined:
            parts.append(f"{self.quarantined} unreadable report(s) moved to {QUARANTINE}/")
        if self.deferred:
            parts.append(f"{self.deferred} older queued report(s) kept for later runs "
                         f"(a run sends at most {FLUSH_MAX_REPORTS}, newest first)")
        return "; ".join(parts)


class Outbox:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, report: Report, report_id: str | None = None) -> Path:
        """Queue ``report`` durably; under ``report_id`` it replaces the one waiting under that id, kept until ``recorded()``."""
        text = json.dumps(asdict(report))
        if report_id:
            (self.directory / UNRECORDED).mkdir(exist_ok=True)
            atomic_write(self.directory / UNRECORDED / f"{report_id}.json", text)
        key = report_id or uuid.uuid4().hex[:8]
        final = self.directory / f"{report.timestamp_ms * 1_000_000:020d}-{key}.json"  # ns, as older pullers named them
        atomic_write(final, text)
        for other in self.directory.glob(f"*-{key}.json"):
            if other != final:
                other.unlink()
        return final

    def unrecorded(self, report_id: str) -> Report | None:
        """The report queued under ``report_id`` by a run killed before it recorded what the report says."""
        try:
            return load_report(self.directory / UNRECORDED / f"{report_id}.json")
        except (OSError, ValueError):
            return None

    def recorded(self) -> None:
        """What the run reports is recorded on disk: no report is waiting to be sent again the same."""
        for path in (self.directory / UNRECORDED).glob("*.json"):
            path.unlink(missing_ok=True)

    def clean_temporary(self) -> int:
        """Remove half-written reports (``*.tmp``) a killed run or a full disk left; their report was never queued."""
        stale = list(self.directory.glob("*.tmp")) + list(self.directory.glob("*/*.tmp"))
        for path in stale:
            path.unlink(missing_ok=True)
        return len(stale)

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("*.json"))

    def dead_letters(self) -> list[Path]:
        return sorted((self.directory / DEAD_LETTER).glob("*.json"))

    def quarantined(self) -> list[Path]:
        return sorted((self.directory / QUARANTINE).glob("*"))

    def flush(self, client: RegistryClient, budget_s: float | None = None) -> FlushResult:
        """Send waiting reports newest first, at most FLUSH_MAX_REPORTS of them within ``budget_s`` seconds.

        Stops (keeping the rest) when the server is unreachable or refuses the
        credentials, or the budget is spent; a report the server refuses goes to the
        dead-letter folder. Never raises for what a server or a damaged file can do.
        """
        sent = dead = bad = 0
        pending = self.pending()[::-1]
        end = None if budget_s is None else time.monotonic() + budget_s
        for i, path in enumerate(pending):
            if sent + dead >= FLUSH_MAX_REPORTS or (end is not None and time.monotonic() >= end):
                return FlushResult(sent, dead, bad, deferred=len(pending) - i)
            try:
                report = load_report(path)
            except (OSError, ValueError) as exc:
                self._move(path, QUARANTINE, f"unreadable: {exc}")
                bad += 1
                continue
            try:
                self._send(path, report, client)
            except (ServerUnreachable, AuthError):
                return FlushResult(sent, dead, bad, len(pending) - i)
            except Refused:
                dead += 1
                continue
            sent += 1
        return FlushResult(sent, dead, bad, 0)

    def send(self, path: Path, client: RegistryClient) -> None:
        """Send one queued report now; removed when sent, moved to the dead-letter folder when
        refused, kept queued (and the error raised) when the server is down or refuses the credentials."""
        self._send(path, load_report(path), client)

    def _send(self, path: Path, report: Report, client: RegistryClient) -> None:
        try:
            _log(client, report)
        except Refused as exc:
            self._move(path, DEAD_LETTER, f"refused by the server: {exc}")
            raise
        _confirm_stored(client, report)
        path.unlink()

    def _move(self, path: Path, folder: str, reason: str) -> None:
        target_dir = self.directory / folder
        target_dir.mkdir(exist_ok=True)
        os.replace(path, target_dir / path.name)
        atomic_write(target_dir / (path.stem + ".reason.txt"), reason + "\n")
        log.warning("report %s %s; kept in %s", path.name, reason, target_dir)


def _confirm_stored(client: RegistryClient, report: Report) -> None:
    """Read back one point of the report: a server (or a proxy) that says "stored" without storing keeps it queued.

    One metric's history on one run: what it costs does not grow with the fleet.
    """
    if not report.metrics:
        return  # nothing to read back cheaply; MLflow's answer to log-batch is all there is
    key, value = next(iter(report.metrics.items()))
    points = client.metric_history(report.run_id, key)
    if not any(ts == report.timestamp_ms and v == value for ts, v in points):
        raise Nonsense(f"log-batch answered success but {key} at {report.timestamp_ms} is not on run {report.run_id}")


def _log(client: RegistryClient, report: Report) -> None:
    """One log-batch; sent again once without the search marker when someone else logged that marker first."""
    try:
        client.log_batch(report.run_id, report.metrics, report.tags, report.timestamp_ms, report.step, report.params)
    except Refused as exc:
        marker = _taken_marker(exc, report.params)
        if not marker:
            raise
        # The marker only has to exist (readers search by it); its value is nobody's vote.
        params = {k: v for k, v in report.params.items() if k != marker}
        client.log_batch(report.run_id, report.metrics, report.tags, report.timestamp_ms, report.step, params)


def _taken_marker(exc: Refused, params: dict[str, str]) -> str | None:
    """The marker param (``v<N>.evidence``) when it alone made the server refuse the batch as a changed param."""
    text = str(exc)  # MLflow names each changed param: [{'key': 'v7.evidence', 'old_value': …}]
    if "Changing param values is not allowed" not in text:
        return None
    conflicting = [k for k in params if f"'key': '{k}'" in text]
    if len(conflicting) != 1:
        return None
    parsed = contract.parse_version_key(conflicting[0])
    return conflicting[0] if parsed and parsed[1] == contract.D_EVIDENCE else None


def report_id(model: str, version: str, sha256: str, device_id: str, verdict: str) -> str:
    """What a report is about, as an id: the same (model, version, bundle, device, verdict) is the same report."""
    return hashlib.sha256("\0".join((model, version, sha256, device_id, verdict)).encode()).hexdigest()[:24]


def load_report(path: Path) -> Report:
    """A queued report, typed exactly as a Report; ValueError for anything else (damage, another version's file)."""
    if not stat.S_ISREG(os.lstat(path).st_mode):
        raise ValueError("not a regular file")
    with open(path, "rb") as fh:
        raw = fh.read(_MAX_REPORT_BYTES + 1)
    if len(raw) > _MAX_REPORT_BYTES:
        raise ValueError(f"larger than {_MAX_REPORT_BYTES} bytes")
    try:
        return _report_from(json.loads(raw.decode("utf-8")))
    except RecursionError:
        raise ValueError("JSON nested too deep") from None


def _report_from(data: object) -> Report:
    if not isinstance(data, dict):
        raise ValueError(f"a JSON {type(data).__name__}, not an object")
    known = {f.name: f for f in fields(Report)}
    missing = [name for name, f in known.items() if name not in data and f.default is MISSING
               and f.default_factory is MISSING]
    extra = sorted(k for k in data if k not in known)
    if missing or extra:
        raise ValueError("; ".join(([f"no {', '.join(missing)}"] if missing else [])
                                   + ([f"unknown {', '.join(extra[:5])}"] if extra else [])))
    for name, value in data.items():
        if not _TYPES[known[name].type](value):
            raise ValueError(f"{name} is not {known[name].type}")
    return Report(**data)


def _is_int64(value: object) -> bool:
    return type(value) is int and -_INT64 <= value < _INT64


def _is_finite(value: object) -> bool:
    try:
        return type(value) in (int, float) and math.isfinite(value)
    except OverflowError:
        return False


def _is_map(value: object, is_value) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and is_value(v) for k, v in value.items())


# Each annotation a Report field has (a string: annotations are postponed) and what a loaded value must be.
_TYPES = {
    "str": lambda v: isinstance(v, str),
    "int": _is_int64,
    "dict[str, float]": lambda v: _is_map(v, _is_finite),
    "dict[str, str]": lambda v: _is_map(v, lambda x: isinstance(x, str)),
}
