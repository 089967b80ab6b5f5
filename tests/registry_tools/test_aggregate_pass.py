"""`edgeq aggregate` reads only device runs whose end time moved since its last pass; `edgeq versions` says how old."""
from __future__ import annotations

import json
import time
from pathlib import Path

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from edge import contract, evidence as signed, identity
from registry_tools import aggregate_pass, versions
from tests.registry_tools.devices import edgeq, new_model, tiny_version

MINUTE_MS = 60_000


def _statement(key: identity.DeviceKey, device: str, model: str, version: str, verdict: str, p50: float) -> str:
    now = int(time.time() * 1000)
    payload = signed.Payload(signed.KIND_REPORT, device, model, now, now, version, "a" * 64, contract.DEFAULT_ALIAS, "",
                             verdict, "" if verdict == contract.STATUS_HEALTHY else "gate: too slow", "no",
                             {contract.D_P50: p50, contract.D_P99: 2 * p50})
    return signed.encode(payload, key.sign)


def _device(client: MlflowClient, model: str, device: str, key: identity.DeviceKey, version: str, verdict: str,
            ended_ms: int, p50: float = 1.0) -> str:
    """A device run as the puller leaves it: identity params, one signed report and its marker, finished at ``ended_ms``."""
    experiment = client.get_registered_model(model).tags[contract.TAG_FLEET_EXPERIMENT_ID]
    run_id = client.create_run(experiment, start_time=ended_ms - 1000).info.run_id
    _report(client, model, run_id, device, key, version, verdict, p50)
    client.log_batch(run_id, tags=[RunTag(contract.TAG_ROLE, contract.ROLE_DEVICE), RunTag(contract.TAG_MODEL, model),
                                   RunTag(contract.TAG_DEVICE_ID, device)],
                     params=[Param(contract.P_DEVICE_ID, device), Param(contract.P_MODEL, model)])
    client.set_terminated(run_id, end_time=ended_ms)
    return run_id


def _report(client: MlflowClient, model: str, run_id: str, device: str, key: identity.DeviceKey, version: str,
            verdict: str, p50: float = 1.0) -> None:
    value = _statement(key, device, model, version, verdict, p50)
    client.log_batch(run_id, params=[Param(signed.param_key(value), value),
                                     Param(contract.version_key(version, contract.D_EVIDENCE), contract.EVIDENCE_MARK)])


def _pass(server, model: str, *args: str) -> str:
    result = edgeq(server, "aggregate", model, *args)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_pass_reads_only_what_moved_since_the_watermark_kept_on_the_server(server, client, tmp_path: Path):
    model = new_model(client, "edgeq-incr", accept_unsigned=False)
    v1, _ = tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
    v2, _ = tiny_version(client, model)
    keys = {f"pi-{i}": identity.load_or_create(tmp_path / f"pi-{i}") for i in range(7)}
    for device, key in keys.items():
        assert edgeq(server, "device", "enroll", device, "--key", key.public_text(), "--model", model).exit_code == 0
    long_ago = int(time.time() * 1000) - 30 * MINUTE_MS
    runs = {d: _device(client, model, d, keys[d], v1, contract.STATUS_HEALTHY, long_ago, p50=1.0 + i)
            for i, d in enumerate(sorted(keys)[:5])}
    _device(client, model, "pi-5", keys["pi-5"], v2, contract.STATUS_REJECTED, long_ago)

    first = _pass(server, model)
    assert "full pass" in first and f"v{v1}: 5 healthy, 0 rejected, 0 behind" in first
    assert f"v{v2}: 0 healthy, 1 rejected" in first
    mark = json.loads(client.get_registered_model(model).tags[contract.TAG_AGGREGATE_WATERMARK])
    assert mark["aliases"] == {contract.DEFAULT_ALIAS: v1} and mark["at_ms"] > long_ago

    quiet = _pass(server, model)  # nothing ended since: nothing read but the search that says so
    assert f"{model}: 0 device run(s) changed since the last pass, 0 run(s) read, 0 version(s) recomputed" in quiet

    # One device refuses v1 now, another only beats (its end time moves, its report does not): v1 alone is read again.
    _report(client, model, runs["pi-0"], "pi-0", keys["pi-0"], v1, contract.STATUS_REJECTED)
    client.set_terminated(runs["pi-0"], end_time=int(time.time() * 1000))
    client.set_terminated(runs["pi-1"], end_time=int(time.time() * 1000))
    moved = _pass(server, model)
    assert "2 device run(s) changed since the last pass" in moved and "1 version(s) recomputed" in moved, moved
    assert f"v{v1}: 4 healthy, 1 rejected, 0 behind" in moved and f"v{v2}:" not in moved

    # The alias moves: both versions are touched; v2's devices that follow production and run v1 are behind.
    client.set_registered_model_alias(model, contract.DEFAULT_ALIAS, v2)
    for device in sorted(keys)[:5]:
        status = signed.Payload(signed.KIND_STATUS, device, model, int(time.time() * 1000), int(time.time() * 1000),
                                v1, "a" * 64, contract.DEFAULT_ALIAS, "", contract.STATUS_HEALTHY, "", "", {})
        value = signed.encode(status, keys[device].sign)
        client.log_batch(runs[device], params=[Param(signed.param_key(value), value)])
    after_move = _pass(server, model)
    assert "2 version(s) recomputed" in after_move, after_move
    assert f"v{v2}: 0 healthy, 1 rejected, 5 behind" in after_move, after_move
    assert f"v{v1}: 4 healthy, 1 rejected, 0 behind" in after_move  # no longer a target: nobody lags behind it


def test_versions_says_how_old_the_aggregates_are_and_marks_them_stale(server, client):
    model = new_model(client, "edgeq-age")
    tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
    now = int(time.time() * 1000)
    tags = {contract.TAG_AGGREGATE_WATERMARK: aggregate_pass.Watermark(now - 4 * MINUTE_MS, {}, 600).value()}
    assert aggregate_pass.age_note(tags, now).startswith("fleet aggregates as of the last `edgeq aggregate` pass, 4 min ago")
    assert "STALE" not in aggregate_pass.age_note(tags, now)
    tags = {contract.TAG_AGGREGATE_WATERMARK: aggregate_pass.Watermark(now - 3 * 3600_000, {}, 600).value()}
    assert "3.0 h ago" in aggregate_pass.age_note(tags, now) and "STALE: past its 10 min timer" in aggregate_pass.age_note(tags, now)
    assert "no `edgeq aggregate` pass recorded" in aggregate_pass.age_note({}, now)

    client.set_registered_model_tag(model, contract.TAG_AGGREGATE_WATERMARK, tags[contract.TAG_AGGREGATE_WATERMARK])
    notes: list[str] = []
    versions.collect(client, model, notes=notes, refresh_limit=0)  # what a fleet past the quick refresh shows
    assert any("3.0 h ago" in n and "STALE" in n for n in notes), notes
