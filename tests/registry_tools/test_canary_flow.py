"""The canary flow end to end with the real puller: canary devices report, promote --from canary, the fleet view."""
from __future__ import annotations

import json


from edge import contract
from edge.gate import GateLimits
from edge.puller import Exit, PullConfig, pull
from edge.registry_client import RegistryClient
from tests.edge.registry_rest import MlflowRest, register_fixture
from tests.registry_tools.devices import edgeq, new_model


def test_canary_devices_decide_the_promotion_and_the_fleet_shows_each_device(server, client, tmp_path):
    model = new_model(client, "edgeq-canary-flow")
    rest = MlflowRest(server.uri)
    v1 = register_fixture(rest, model, "int8", alias=contract.DEFAULT_ALIAS).version
    v2 = register_fixture(rest, model, "int8", alias=None).version
    assert edgeq(server, "promote", model, v2, "--alias", contract.CANARY_ALIAS).exit_code == 0

    registry = RegistryClient(server.uri)

    def device(name: str, alias: str, gate: GateLimits = GateLimits()) -> Exit:
        config = PullConfig(model, tmp_path / name, name, alias=alias, runs=5, warmup=1, gate=gate, interval_s=60)
        return pull(config, registry).code

    assert device("pi-ca", contract.CANARY_ALIAS) == Exit.OK
    assert device("pi-cb", contract.CANARY_ALIAS) == Exit.OK
    assert device("pi-cc", contract.CANARY_ALIAS, GateLimits(max_p99_ms=0.000001)) == Exit.REJECTED  # its gate fails
    assert device("pi-prod", contract.DEFAULT_ALIAS) == Exit.OK

    refused = edgeq(server, "promote", model, "--from", "canary", "--require-devices", "3")
    assert refused.exit_code == contract.ExitCode.REJECTED, refused.output
    assert "refused: 2 device(s) count, 3 required" in refused.output
    assert "not counted  pi-cc  rejected it:" in refused.output

    promoted = edgeq(server, "promote", model, "--from", "canary", "--require-devices", "2")
    assert promoted.exit_code == 0, promoted.output
    counted = [line.split()[1] for line in promoted.output.splitlines() if line.strip().startswith("counted")]
    assert counted == ["pi-ca", "pi-cb"]
    assert f"production → v{v2}" in promoted.output
    # The same judge: the canary's reports judge the canary, never production, whose window starts now.
    guarded = edgeq(server, "guard", model)  # before: 1 of the 3 canary reports against (33 %): rolled back
    assert guarded.exit_code == contract.ExitCode.HELD, guarded.output
    assert "too few devices in the window: 0 voted, 3 needed" in guarded.output
    assert str(client.get_registered_model(model).aliases[contract.DEFAULT_ALIAS]) == v2

    rows = {r["device"]: r for r in json.loads(edgeq(server, "fleet", model, "--json").stdout)}
    assert rows["pi-ca"]["status"] == "ok" and rows["pi-ca"]["running_version"] == v2
    assert rows["pi-ca"]["latency_p50_ms"] > 0 and rows["pi-ca"]["sample_accuracy"] > 0.9
    assert rows["pi-cc"]["flags"][0].startswith(f"rejected v{v2} (") and "p99" in rows["pi-cc"]["flags"][0]
    assert rows["pi-prod"]["flags"] == [f"behind (v{v1} < v{v2})"], "production moved on; pi-prod has not pulled yet"

    assert device("pi-prod", contract.DEFAULT_ALIAS) == Exit.OK
    rows = {r["device"]: r for r in json.loads(edgeq(server, "fleet", model, "--json").stdout)}
    assert rows["pi-prod"]["status"] == "ok" and rows["pi-prod"]["running_version"] == v2

    latest = json.loads(edgeq(server, "history", model, "--json").stdout)[0]
    assert (latest["alias"], latest["from_version"], latest["to_version"]) == (contract.DEFAULT_ALIAS, v1, v2)
    assert "pi-ca (" in latest["reason"] and "pi-cb (" in latest["reason"] and "not counted: pi-cc rejected it" in latest["reason"]
