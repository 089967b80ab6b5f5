"""Every run tells the fleet it is alive: the device's own run in the fleet experiment, and no history rows.

The device keeps one run per (model, device) in ``edgeq-fleet`` (docs/fleet.md). A heartbeat
sets that run's end time to the server-corrected "now" and its status to FINISHED (runs/update:
an upsert of one row, so a year of 15-minute runs adds no rows), and rewrites its tags only when
one changed (running version, last status, the clock's skew…): a run with nothing to do costs two
requests, resolve and runs/update. The run id and the tags last sent are cached in ``fleet.json``.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edge import clock, contract
from edge.benchmark import BenchmarkResult
from edge.contract import ExitCode
from edge.device_info import hostname
from edge.fsutil import atomic_write
from edge.registry_client import Refused, RegistryClient
from edge.state import Installed

FLEET_FILE = "fleet.json"


def _cached(state_root: Path, model: str, device_id: str) -> dict[str, Any]:
    try:
        data = json.loads((state_root / FLEET_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict) or (data.get("model"), data.get("device_id")) != (model, device_id):
        return {}
    return data


def _save(state_root: Path, model: str, device_id: str, run_id: str, sent_tags: dict[str, str] | None = None) -> None:
    data = {"model": model, "device_id": device_id, "run_id": run_id}
    if sent_tags is not None:
        data["sent_tags"] = sent_tags
    atomic_write(state_root / FLEET_FILE, json.dumps(data))


def fleet_run_id(client: RegistryClient, state_root: Path, model: str, device_id: str, fresh: bool = False) -> str:
    """The device's run in the fleet experiment: cached, found by its tags, or created."""
    if not fresh:
        run_id = _cached(state_root, model, device_id).get("run_id")
        if isinstance(run_id, str) and run_id:
            return run_id
    experiment_id = client.experiment_id(contract.FLEET_EXPERIMENT)
    identity = {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_MODEL: model, contract.TAG_DEVICE_ID: device_id}
    run_id = client.find_run(experiment_id, identity) or client.start_run(
        experiment_id, f"{device_id} · {model}", identity, clock.now_ms())
    _save(state_root, model, device_id, run_id)
    return run_id


def heartbeat_tags(config: Any, current: Installed | None, code: ExitCode, message: str,
                   result: BenchmarkResult | None, throttled: str | None = None) -> dict[str, str]:
    """What the fleet view reads about the device's last run; figures travel in the reports, not here."""
    tags = {
        contract.TAG_ALIAS: config.alias if not config.version else f"version {config.version}",
        contract.TAG_HOSTNAME: hostname(),
        contract.TAG_INTERVAL_S: str(config.interval_s),
        contract.TAG_RUNNING_VERSION: current.version if current else "",
        contract.TAG_LAST_STATUS: contract.last_status(code),
        contract.TAG_LAST_REASON: "" if code == ExitCode.OK else message[:4000],
    }
    skew = clock.CLOCK.skew_tag()
    if skew is not None:
        tags[contract.TAG_CLOCK_SKEW_S] = skew
    if result and throttled:
        tags[contract.D_THROTTLED] = throttled
    return tags


def send_heartbeat(client: RegistryClient, state_root: Path, config: Any, device_id: str, current: Installed | None,
                   code: ExitCode, message: str, result: BenchmarkResult | None, throttled: str | None = None) -> None:
    tags = heartbeat_tags(config, current, code, message, result, throttled)
    sent = _cached(state_root, config.model, device_id).get("sent_tags") or {}
    if contract.D_THROTTLED not in tags and isinstance(sent, dict) and contract.D_THROTTLED in sent:
        tags[contract.D_THROTTLED] = sent[contract.D_THROTTLED]  # stays on the run until a benchmark says otherwise
    run_id = fleet_run_id(client, state_root, config.model, device_id)
    try:
        _beat(client, state_root, config.model, device_id, run_id, tags)
    except Refused:  # the fleet run was deleted: make a new one, once
        run_id = fleet_run_id(client, state_root, config.model, device_id, fresh=True)
        _beat(client, state_root, config.model, device_id, run_id, tags)


def _beat(client: RegistryClient, state_root: Path, model: str, device_id: str, run_id: str, tags: dict[str, str]) -> None:
    if _cached(state_root, model, device_id).get("sent_tags") != tags:
        client.log_batch(run_id, {}, tags)
        _save(state_root, model, device_id, run_id, tags)
    client.finish_run(run_id, clock.now_ms())
