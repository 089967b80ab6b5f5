"""Every run tells the fleet it is alive: the device's own run in the fleet experiment, and no history rows.

The device keeps one run per (model, device) in ``edgeq-fleet`` (docs/fleet.md). A heartbeat
sets that run's end time to the server-corrected "now" and its status to FINISHED (runs/update:
an upsert of one row, so a year of 15-minute runs adds no rows), and rewrites its tags only when
one changed (running version, last status, the clock's skew…). A run whose tags did not change sends
the runs/update only when the heartbeat interval (``--heartbeat-every``, an hour) is due: a quiet run
costs one request, its resolve, and a quiet device about 1.25 requests per 15-minute run. The fleet
view calls a device stale after a few of max(run interval, heartbeat interval), both in its tags.
The run id, the tags last sent and when the last heartbeat went are cached in ``fleet.json``.

The fleet experiment is the one whose id the operator recorded on the model
(``contract.TAG_FLEET_EXPERIMENT_ID``); only a model without that record falls back to the
experiment's name. The run carries the device's identity as write-once params, and a heartbeat
whose tags changed also carries the device's signed status (edge/evidence.py) in the same batch.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

from edge import clock, contract, evidence, identity
from edge.benchmark import BenchmarkResult
from edge.contract import ExitCode
from edge.device_info import hostname
from edge.fsutil import atomic_write
from edge.registry_client import Refused, RegistryClient, RegistryError
from edge.report import sign
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


def _save(state_root: Path, model: str, device_id: str, run_id: str, sent_tags: dict[str, str] | None = None,
          experiment_id: str | None = None, beat_at_ms: int | None = None) -> None:
    data: dict[str, Any] = {"model": model, "device_id": device_id, "run_id": run_id}
    cached = _cached(state_root, model, device_id)
    experiment_id = experiment_id or (cached.get("experiment_id") if cached.get("run_id") == run_id else None)
    if experiment_id:
        data["experiment_id"] = experiment_id
    if sent_tags is not None:
        data["sent_tags"] = sent_tags
    if beat_at_ms is not None:
        data["beat_at_ms"] = beat_at_ms
    atomic_write(state_root / FLEET_FILE, json.dumps(data))


def fleet_run_id(client: RegistryClient, state_root: Path, model: str, device_id: str, fresh: bool = False) -> str:
    """The device's run in the fleet experiment: cached, found by its identity params (older runs: tags), or created."""
    if not fresh:
        run_id = _cached(state_root, model, device_id).get("run_id")
        if isinstance(run_id, str) and run_id:
            return run_id
    experiment_id, recorded = _fleet_experiment(client, model)
    try:
        run_id = (client.find_run(experiment_id, _identity_params(model, device_id), kind="params")
                  or _adopt(client, experiment_id, model, device_id)
                  or _create(client, experiment_id, model, device_id))
    except Refused as exc:
        if not recorded:
            raise
        # Not a missing model (NotFound would say so): the operator's record points nowhere usable.
        raise RegistryError(f"the fleet experiment {experiment_id!r} recorded on model {model!r} "
                            f"({contract.TAG_FLEET_EXPERIMENT_ID}) cannot hold this device's run ({exc}); "
                            f"the operator has to record the fleet experiment again") from exc
    _save(state_root, model, device_id, run_id, experiment_id=experiment_id)
    return run_id


def _fleet_experiment(client: RegistryClient, model: str) -> tuple[str, bool]:
    """(experiment id, whether the operator recorded it): the model's record, else the experiment named edgeq-fleet."""
    recorded = client.model_tags(model).get(contract.TAG_FLEET_EXPERIMENT_ID, "").strip()
    if recorded:
        return recorded, True
    return client.experiment_id(contract.FLEET_EXPERIMENT), False  # a fleet nobody enrolled: found or made by name


def _identity_tags(model: str, device_id: str) -> dict[str, str]:
    return {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_MODEL: model, contract.TAG_DEVICE_ID: device_id}


def _identity_params(model: str, device_id: str) -> dict[str, str]:
    return {contract.P_DEVICE_ID: device_id, contract.P_MODEL: model}


def _adopt(client: RegistryClient, experiment_id: str, model: str, device_id: str) -> str | None:
    """A run made before identity params, found by its tags and given them once."""
    run_id = client.find_run(experiment_id, _identity_tags(model, device_id))
    if run_id:
        try:
            client.log_batch(run_id, {}, {}, params=_identity_params(model, device_id))
        except Refused:  # another value got there first: params stay as they are, signed payloads say who speaks
            pass
    return run_id


def _create(client: RegistryClient, experiment_id: str, model: str, device_id: str) -> str:
    """A new run for the device, its identity params logged right away (runs/create takes no params)."""
    run_id = client.start_run(experiment_id, f"{device_id} · {model}", _identity_tags(model, device_id), clock.now_ms())
    client.log_batch(run_id, {}, {}, params=_identity_params(model, device_id))
    return run_id


def heartbeat_s(config: Any) -> int:
    """The config's heartbeat interval (simulated devices' configs may not carry one: the default)."""
    return int(getattr(config, "heartbeat_s", contract.DEFAULT_HEARTBEAT_MINUTES * 60))


def heartbeat_tags(config: Any, current: Installed | None, code: ExitCode, message: str,
                   result: BenchmarkResult | None, throttled: str | None = None) -> dict[str, str]:
    """What the fleet view reads about the device's last run; figures travel in the reports, not here."""
    tags = {
        contract.TAG_ALIAS: config.alias if not config.version else f"version {config.version}",
        contract.TAG_HOSTNAME: hostname(),
        contract.TAG_INTERVAL_S: str(config.interval_s),
        contract.TAG_HEARTBEAT_S: str(heartbeat_s(config)),
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


def status_params(key: identity.DeviceKey, state_root: Path, config: Any, device_id: str, current: Installed | None,
                  code: ExitCode, message: str) -> dict[str, str]:
    """The device's signed status (what it runs, what its last run said) as its write-once param."""
    payload = evidence.Payload(
        kind=evidence.KIND_STATUS, device=device_id, model=config.model, seq=identity.next_seq(state_root),
        at=clock.now_ms(), version=current.version if current else "", sha256=current.sha256 if current else "",
        alias=config.alias if not config.version else "", verdict=contract.last_status(code),
        reason="" if code == ExitCode.OK else message)
    value = sign(payload, key)
    return {evidence.param_key(value): value}


def send_heartbeat(client: RegistryClient, state_root: Path, config: Any, device_id: str, current: Installed | None,
                   code: ExitCode, message: str, result: BenchmarkResult | None, throttled: str | None = None,
                   key: identity.DeviceKey | None = None) -> None:
    tags = heartbeat_tags(config, current, code, message, result, throttled)
    sent = _cached(state_root, config.model, device_id).get("sent_tags") or {}
    if contract.D_THROTTLED not in tags and isinstance(sent, dict) and contract.D_THROTTLED in sent:
        tags[contract.D_THROTTLED] = sent[contract.D_THROTTLED]  # stays on the run until a benchmark says otherwise
    # Signed only when what the device runs or how its last run ended changed (a quiet run signs and sends nothing).
    status = (lambda: status_params(key, state_root, config, device_id, current, code, message)) if key else dict
    cached = _cached(state_root, config.model, device_id)
    if cached.get("sent_tags") == tags and not due(cached.get("beat_at_ms"), clock.now_ms(), heartbeat_s(config),
                                                   config.interval_s):
        return  # nothing changed and the last heartbeat is recent: a quiet run sends only its resolve
    run_id = fleet_run_id(client, state_root, config.model, device_id)
    try:
        _beat(client, state_root, config.model, device_id, run_id, tags, status)
    except Refused:  # the fleet run was deleted: make a new one, once
        run_id = fleet_run_id(client, state_root, config.model, device_id, fresh=True)
        _beat(client, state_root, config.model, device_id, run_id, tags, status)


def due(beat_at_ms: Any, now_ms: int, every_s: float, interval_s: float) -> bool:
    """Whether a quiet run sends its heartbeat: the last one is at least an interval's worth old.

    Half a run interval early counts, so runs every 15 minutes beat every 4th run (not drift to the 5th
    when one run starts a second sooner); a clock that went back, or no record, beats at once.
    """
    if every_s <= 0 or not isinstance(beat_at_ms, int):
        return True
    age_s = (now_ms - beat_at_ms) / 1000
    return age_s < 0 or age_s + interval_s / 2 >= every_s


# The tags a signed status covers: a change of any other (the clock's skew, the hostname) rewrites the tags only.
STATUS_TAGS = (contract.TAG_ALIAS, contract.TAG_RUNNING_VERSION, contract.TAG_LAST_STATUS, contract.TAG_LAST_REASON)


def _beat(client: RegistryClient, state_root: Path, model: str, device_id: str, run_id: str, tags: dict[str, str],
          status: Callable[[], dict[str, str]] = dict) -> None:
    sent = _cached(state_root, model, device_id).get("sent_tags")
    if sent != tags:
        changed = not isinstance(sent, dict) or any(sent.get(k) != tags.get(k) for k in STATUS_TAGS)
        client.log_batch(run_id, {}, tags, params=status() if changed else {})
        _save(state_root, model, device_id, run_id, tags)
    now = clock.now_ms()
    client.finish_run(run_id, now)
    _save(state_root, model, device_id, run_id, tags, beat_at_ms=now)
