"""Reports that could not reach the server wait here, one JSON file each, in order.

A report the server refuses (its run was deleted, the request is invalid) can never
be sent: it moves to ``dead-letter/`` with the reason beside it, so it neither blocks
the reports behind it nor the run. A file that cannot be read moves to ``quarantine/``.
Both are kept for a person to look at; nothing is deleted.
"""
from __future__ import annotations

import json
import logging
import os
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edge.fsutil import atomic_write
from edge.registry_client import AuthError, Nonsense, Refused, RegistryClient, ServerUnreachable

log = logging.getLogger("edgeq-pull")

DEAD_LETTER = "dead-letter"
QUARANTINE = "quarantine"


@dataclass(frozen=True)
class Report:
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]
    timestamp_ms: int
    step: int = 0


@dataclass(frozen=True)
class FlushResult:
    sent: int = 0
    dead_lettered: int = 0
    quarantined: int = 0
    waiting: int = 0
    problems: tuple[str, ...] = field(default=())

    def note(self) -> str:
        parts = [f"sent {self.sent} queued report(s)"] if self.sent else []
        if self.dead_lettered:
            parts.append(f"{self.dead_lettered} refused report(s) moved to {DEAD_LETTER}/")
        if self.quarantined:
            parts.append(f"{self.quarantined} unreadable report(s) moved to {QUARANTINE}/")
        return "; ".join(parts)


class Outbox:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, report: Report) -> Path:
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        final = self.directory / name
        atomic_write(final, json.dumps(asdict(report)))
        return final

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

    def flush(self, client: RegistryClient) -> FlushResult:
        """Send waiting reports oldest first.

        Stops (keeping the rest) when the server is unreachable or refuses the
        credentials; a report the server refuses goes to the dead-letter folder.
        Never raises for what a server or a damaged file can do.
        """
        sent = dead = bad = 0
        pending = self.pending()
        for i, path in enumerate(pending):
            try:
                report = _load(path)
            except (OSError, ValueError, TypeError) as exc:
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
        self._send(path, _load(path), client)

    def _send(self, path: Path, report: Report, client: RegistryClient) -> None:
        try:
            client.log_batch(report.run_id, report.metrics, report.tags, report.timestamp_ms, report.step)
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


def _load(path: Path) -> Report:
    return Report(**json.loads(path.read_text(encoding="utf-8")))
