"""A staged rollout in ``edgeq fleet`` and the aggregates: a device the share keeps on the fallback is not behind."""
from __future__ import annotations

import itertools
import json

import pytest

from edge import contract
from edge.rollout_share import Share, takes
from tests.registry_tools.devices import edgeq, fleet_device, new_model, report, tiny_version

ALIAS = contract.DEFAULT_ALIAS


def _device(inside: bool, version: str, percent: float, prefix: str) -> str:
    return next(d for d in (f"{prefix}-{i}" for i in itertools.count()) if takes(d, version, percent) == inside)


@pytest.fixture()
def staged(server, client):
    """v1 (the fallback) to v2 at a 50 % stage: one device outside the share on v1, one inside still on v1, one on v2."""
    model = new_model(client, "edgeq-staged")
    v1, run1 = tiny_version(client, model)
    v2, run2 = tiny_version(client, model)
    client.set_model_version_tag(model, v2, contract.rollout_tag(ALIAS), Share(50.0, v1).encode())
    client.set_registered_model_alias(model, ALIAS, v2)
    outside, inside = _device(False, v2, 50.0, "pi-out"), _device(True, v2, 50.0, "pi-in")
    report(client, run1, outside, v1, alias=ALIAS)
    report(client, run1, inside, v1, alias=ALIAS)
    report(client, run2, "pi-new", v2, alias=ALIAS)
    for device, running in ((outside, v1), (inside, v1), ("pi-new", v2)):
        fleet_device(client, model, device, running_version=running)
    return model, v1, v2, outside, inside


def test_a_device_outside_the_share_on_the_fallback_is_ok_and_one_inside_is_behind(server, staged):
    model, v1, v2, outside, inside = staged
    rows = {r["device"]: r for r in json.loads(edgeq(server, "fleet", model, "--json").stdout)}
    assert rows[outside]["flags"] == [] and rows[outside]["notes"] == [f"outside the 50 % stage of v{v2}"]
    assert rows[outside]["status"] == f"ok (outside the 50 % stage of v{v2})"
    assert rows[outside]["alias_version"] == v2
    assert rows[inside]["flags"] == [f"behind (v{v1} < v{v2})"] and rows[inside]["notes"] == []
    assert rows["pi-new"]["status"] == "ok"
    table = edgeq(server, "fleet", model, "--wide")
    assert table.exit_code == 0, table.output
    line = next(x for x in table.output.splitlines() if x.startswith(outside))
    assert line.rstrip().endswith(f"ok (outside the 50 % stage of v{v2})")
    assert "3 device(s): 1 behind, 2 ok" in table.output


def test_the_aggregate_does_not_count_a_device_outside_the_share_as_behind(server, staged):
    model, v1, v2, outside, inside = staged
    result = edgeq(server, "aggregate", model, "--full")
    assert result.exit_code == 0, result.output
    assert f"v{v2}: 1 healthy, 0 rejected, 1 behind" in result.output
    rows = {r["version"]: r for r in json.loads(edgeq(server, "versions", model, "--json").stdout)}
    assert rows[v2]["fleet"][contract.A_BEHIND] == 1


def test_a_stage_that_grows_recounts_behind_in_the_next_pass(server, client, staged):
    model, v1, v2, outside, inside = staged
    assert "1 behind" in edgeq(server, "aggregate", model, "--full").output
    client.set_model_version_tag(model, v2, contract.rollout_tag(ALIAS), Share(100.0, v1).encode())
    result = edgeq(server, "aggregate", model)
    assert f"v{v2}: 1 healthy, 0 rejected, 2 behind" in result.output, result.output


def test_an_unreadable_rollout_tag_is_no_share_and_said(server, client, staged):
    model, v1, v2, outside, inside = staged
    client.set_model_version_tag(model, v2, contract.rollout_tag(ALIAS), "{not json")
    result = edgeq(server, "fleet", model, "--json")
    assert result.exit_code == 0, result.output
    rows = {r["device"]: r for r in json.loads(result.stdout)}
    assert rows[outside]["flags"] == [f"behind (v{v1} < v{v2})"]
    assert "unreadable" in result.stderr and contract.rollout_tag(ALIAS) in result.stderr
    table = edgeq(server, "fleet", model, "--wide").output
    assert f"v{v2}'s staged-rollout tag {contract.rollout_tag(ALIAS)!r} is unreadable (not JSON)" in table
    aggregated = edgeq(server, "aggregate", model, "--full").output
    assert f"v{v2}: 1 healthy, 0 rejected, 2 behind" in aggregated and "unreadable" in aggregated
