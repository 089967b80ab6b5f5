"""Every run tells the fleet it is alive: one request to the device's run in the fleet experiment.

Decision (see README, "The fleet"): device reports stay on each version's own run (the
contract); a device's heartbeats and its history over time live in one run per
(model, device) in the ``edgeq-fleet`` experiment, so the MLflow UI charts a device's
latency over time and compares devices. The run id is cached in ``fleet.json`` in the
state directory, so a run with nothing to do costs two requests: resolve and heartbeat.
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from edge import contract
from edge.benchmark import BenchmarkResult
from edge.contract import ExitCode
from edge.device_info import hostname
from edge.fsutil import atomic_write
from edge.registry_client import Refused, RegistryClient
from edge.state import Installed

FLEET_FILE = "fleet.json"


def fleet_run_id(client: RegistryClient, state_root: Path, model: str, device_id: str, fresh: bool = False) -> str:
    """The device's run in the fleet experiment: cached, found by its tags, or created."""
    cache = state_root / FLEET_FILE
    if not fresh:
        try:
            data = json.loads(cache.read_text(encoding="utf-8"))
            if (data.get("model"), data.get("device_id")) == (model, device_id) and data.get("run_id"):
                return data["run_id"]
        except (OSError, ValueError, AttributeError):
            pass
    experiment_id = client.experiment_id(contract.FLEET_EXPERIMENT)
    identity = {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_MODEL: model, contract.TAG_DEVICE_ID: device_id}
    run_id = client.find_run(experiment_id, identity) or client.create_run(experiment_id, f"{device_id} · {model}", identity)
    atomic_write(cache, json.dumps({"model": model, "device_id": device_id, "run_id": run_id}))
    return run_id


def heartbeat_batch(config: Any, current: Installed | None, code: ExitCode, message: str,
                    result: BenchmarkResult | None, throttled: str | None = None) -> tuple[dict[str, float], dict[str, str]]:
    metrics: dict[str, float] = {contract.M_HEARTBEAT: 1.0}
    if current:
        metrics[contract.M_RUNNING_VERSION] = float(current.version)
    if result:
        metrics[contract.D_P50] = result.latency.p50_ms
        metrics[contract.D_P99] = result.latency.p99_ms
        if result.accuracy is not None:
            metrics[contract.D_SAMPLE_ACCURACY] = result.accuracy
    tags = {
        contract.TAG_ALIAS: config.alias if not config.version else f"version {config.version}",
        contract.TAG_HOSTNAME: hostname(),
        contract.TAG_INTERVAL_S: str(config.interval_s),
        contract.TAG_RUNNING_VERSION: current.version if current else "",
        contract.TAG_LAST_STATUS: contract.last_status(code),
        contract.TAG_LAST_REASON: "" if code == ExitCode.OK else message,
    }
    if result and throttled:
        tags[contract.D_THROTTLED] = throttled
    return metrics, tags


def send_heartbeat(client: RegistryClient, state_root: Path, config: Any, device_id: str, current: Installed | None,
                   code: ExitCode, message: str, result: BenchmarkResult | None, throttled: str | None = None) -> None:
    metrics, tags = heartbeat_batch(config, current, code, message, result, throttled)
    now_ms = int(time.time() * 1000)
    step = now_ms // 60_000  # minutes: increasing without keeping a counter on the device
    run_id = fleet_run_id(client, state_root, config.model, device_id)
    try:
        client.log_batch(run_id, metrics, tags, now_ms, step)
    except Refused:  # the fleet run was deleted: make a new one, once
        client.log_batch(fleet_run_id(client, state_root, config.model, device_id, fresh=True), metrics, tags, now_ms, step)
