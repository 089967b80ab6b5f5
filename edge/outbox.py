"""Reports that could not reach the server wait here, one JSON file each, in order."""
from __future__ import annotations

import json
import os
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path

from edge.registry_client import RegistryClient, ServerUnreachable


@dataclass(frozen=True)
class Report:
    run_id: str
    metrics: dict[str, float]
    tags: dict[str, str]
    timestamp_ms: int


class Outbox:
    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def put(self, report: Report) -> Path:
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}.json"
        tmp = self.directory / (name + ".tmp")
        tmp.write_text(json.dumps(asdict(report)), encoding="utf-8")
        final = self.directory / name
        os.replace(tmp, final)
        return final

    def pending(self) -> list[Path]:
        return sorted(self.directory.glob("*.json"))

    def flush(self, client: RegistryClient) -> int:
        """Send waiting reports oldest first; stops at the first unreachable server. Returns how many were sent."""
        sent = 0
        for path in self.pending():
            report = Report(**json.loads(path.read_text(encoding="utf-8")))
            try:
                client.log_batch(report.run_id, report.metrics, report.tags, report.timestamp_ms)
            except ServerUnreachable:
                break
            path.unlink()
            sent += 1
        return sent
