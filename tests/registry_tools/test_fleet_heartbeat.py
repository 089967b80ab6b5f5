"""The fleet view calls a device stale after a few of max(run interval, heartbeat interval), both from its tags."""
from __future__ import annotations

import json

from edge import contract
from tests.registry_tools.devices import edgeq, fleet_device, new_model, tiny_version


def test_a_quiet_device_that_beats_hourly_is_stale_only_after_a_few_heartbeats(server, client):
    model = new_model(client, "edgeq-beat")
    version, _ = tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
    for device, seen_h, beat_s in (("pi-hourly", 2.0, "3600"), ("pi-gone", 3.5, "3600"), ("pi-every-run", 2.0, None)):
        run_id = fleet_device(client, model, device, running_version=version, seen_s_ago=seen_h * 3600, interval_s=900)
        if beat_s:
            client.set_tag(run_id, contract.TAG_HEARTBEAT_S, beat_s)

    result = edgeq(server, "fleet", model, "--json")

    assert result.exit_code == 0, result.output
    flags = {r["device"]: r["flags"] for r in json.loads(result.stdout)}
    assert flags == {"pi-hourly": [], "pi-gone": ["stale"], "pi-every-run": ["stale"]}, flags
