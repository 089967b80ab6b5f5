"""Views over a registry someone cleaned up by hand: a deleted version run, device run or version is shown, not fatal."""
from __future__ import annotations

import json

from edge import contract
from tests.registry_tools.devices import edgeq, fleet_device, new_model, report, tiny_version


def _model_with_a_deleted_version_run(client):
    model = new_model(client, "edgeq-deleted")
    v1, run1 = tiny_version(client, model)
    v2, run2 = tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
    report(client, run1, "pi-old", v1, alias=contract.DEFAULT_ALIAS)
    report(client, run2, "pi-new", v2, alias=contract.DEFAULT_ALIAS)
    fleet_device(client, model, "pi-old", running_version=v1)
    fleet_device(client, model, "pi-new", running_version=v2)
    client.delete_run(run1)
    return model, v1, v2, run1


def test_versions_and_fleet_show_a_version_whose_run_was_deleted(server, client):
    model, v1, v2, run1 = _model_with_a_deleted_version_run(client)
    result = edgeq(server, "versions", model)
    assert result.exit_code == 0, result.output
    v1_line = next(line for line in result.output.splitlines() if line.startswith(f"{v1} "))
    assert "run deleted" in v1_line
    rows = {r["version"]: r for r in json.loads(edgeq(server, "versions", model, "--json").stdout)}
    assert (rows[v1]["run_gone"], rows[v2]["run_gone"]) == ("run deleted", "")
    assert rows[v2]["fleet"][contract.A_HEALTHY] == 1
    fleet = edgeq(server, "fleet", model)
    assert fleet.exit_code == 0, fleet.output
    assert "pi-old" in fleet.output and "pi-new" in fleet.output
    devices = edgeq(server, "versions", model, "--devices")
    assert devices.exit_code == 0, devices.output
    assert client.get_run(run1).info.lifecycle_stage == "deleted"
    assert contract.A_REPORTING not in client.get_run(run1).data.metrics, "nothing written to a deleted run"


def test_aggregate_skips_a_version_whose_run_was_deleted_and_says_so(server, client):
    model, v1, v2, run1 = _model_with_a_deleted_version_run(client)
    result = edgeq(server, "aggregate", model, "--full")
    assert result.exit_code == 0, result.output
    assert f"v{v1}" in result.output and "run deleted" in result.output
    assert f"v{v2}: 1 healthy" in result.output
    assert contract.A_REPORTING not in client.get_run(run1).data.metrics


def test_fleet_and_versions_survive_a_deleted_device_run_and_a_deleted_version(server, client):
    model = new_model(client, "edgeq-deleted")
    v1, run1 = tiny_version(client, model)
    v2, run2 = tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
    v3, _ = tiny_version(client, model, alias=contract.CANARY_ALIAS)
    report(client, run2, "pi-a", v2, alias=contract.DEFAULT_ALIAS)
    gone = fleet_device(client, model, "pi-gone", running_version=v2)
    fleet_device(client, model, "pi-a", running_version=v2)
    fleet_device(client, model, "pi-canary", alias=contract.CANARY_ALIAS, running_version=v3)
    client.delete_run(gone)
    client.delete_model_version(model, v3)  # the canary alias goes with it
    for args in (("versions", model), ("versions", model, "--devices"), ("fleet", model), ("aggregate", model)):
        result = edgeq(server, *args)
        assert result.exit_code == 0, (args, result.output)
    fleet = edgeq(server, "fleet", model)
    assert "pi-gone" not in fleet.output
    canary = next(line for line in fleet.output.splitlines() if line.startswith("pi-canary"))
    assert "unset" in canary
    versions = edgeq(server, "versions", model).output
    assert not any(line.startswith(f"{v3} ") for line in versions.splitlines())


def test_a_model_without_any_version(server, client):
    model = new_model(client, "edgeq-deleted")
    fleet_device(client, model, "pi-early", running_version=None)
    for args in (("versions", model), ("versions", model, "--devices"), ("fleet", model), ("aggregate", model)):
        result = edgeq(server, *args)
        assert result.exit_code == 0, (args, result.output)
    assert "no version" in edgeq(server, "versions", model).output
