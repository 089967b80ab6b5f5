"""``edgeq fleet`` and throttled marks in ``edgeq versions``, from the runs devices write to a real MLflow server."""
from __future__ import annotations

import json

import pytest

from edge import contract
from tests.registry_tools.devices import edgeq, fleet_device, new_model, report, tiny_version


@pytest.fixture()
def fleet(server, client):
    """production at v2, canary at v3; five devices in the states the fleet view must tell apart."""
    model = new_model(client, "edgeq-fleet")
    v1, run1 = tiny_version(client, model)
    v2, run2 = tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
    v3, run3 = tiny_version(client, model, alias=contract.CANARY_ALIAS)
    report(client, run2, "pi-ok", v2, p50=1.25, p99=2.5, sample_accuracy=0.969, alias=contract.DEFAULT_ALIAS)
    fleet_device(client, model, "pi-ok", running_version=v2, p50=1.25, p99=2.5, sample_accuracy=0.969)
    fleet_device(client, model, "pi-stale", running_version=v2, seen_s_ago=2 * 3600, interval_s=900)
    report(client, run1, "pi-behind", v1, alias=contract.DEFAULT_ALIAS)
    fleet_device(client, model, "pi-behind", running_version=v1)
    report(client, run3, "pi-refuses", v3, status=contract.STATUS_REJECTED, reason="sample accuracy 0.094 below bound 0.810")
    fleet_device(client, model, "pi-refuses", alias=contract.CANARY_ALIAS, running_version=v2,
                 status=contract.STATUS_REJECTED, reason="sample accuracy 0.094 below bound 0.810")
    report(client, run2, "pi-hot", v2, p50=4.0, p99=9.0, throttled="yes", alias=contract.DEFAULT_ALIAS)
    fleet_device(client, model, "pi-hot", running_version=v2, p50=4.0, p99=9.0)
    fleet_device(client, model, "pi-cut-off", running_version=v2, status="exit 3",
                 reason="server unreachable; 1 report(s) queued")
    return model, v1, v2, v3


def test_fleet_json_tells_ok_stale_rejected_behind_and_throttled_apart(server, fleet):
    model, v1, v2, v3 = fleet
    result = edgeq(server, "fleet", model, "--json")
    assert result.exit_code == 0, result.output
    rows = {r["device"]: r for r in json.loads(result.stdout)}
    assert sorted(rows) == ["pi-behind", "pi-cut-off", "pi-hot", "pi-ok", "pi-refuses", "pi-stale"]

    ok = rows["pi-ok"]
    assert ok["status"] == "ok" and ok["flags"] == [] and not ok["throttled"]
    assert (ok["hostname"], ok["alias"], ok["running_version"], ok["alias_version"]) == ("host-pi-ok", "production", v2, v2)
    assert (ok["latency_p50_ms"], ok["latency_p99_ms"], ok["sample_accuracy"]) == (1.25, 2.5, 0.969)
    assert ok["last_seen"] is not None

    assert rows["pi-stale"]["flags"] == ["stale"]
    assert rows["pi-behind"]["flags"] == [f"behind (v{v1} < v{v2})"]
    assert rows["pi-refuses"]["flags"] == [f"rejected v{v3} (sample accuracy 0.094 below bound 0.810)"]
    assert rows["pi-refuses"]["alias"] == contract.CANARY_ALIAS
    assert rows["pi-hot"]["throttled"] and rows["pi-hot"]["status"] == "ok"
    assert rows["pi-cut-off"]["flags"] == ["last run exit 3 (server unreachable; 1 report(s) queued)"]


def test_fleet_table_marks_each_state_and_throttled_figures(server, fleet):
    model, v1, v2, v3 = fleet
    result = edgeq(server, "fleet", model, "--wide")
    assert result.exit_code == 0, result.output
    lines = {line.split()[0]: line for line in result.output.splitlines() if line.startswith("pi-")}
    assert lines["pi-ok"].rstrip().endswith("ok") and "1.25" in lines["pi-ok"] and "96.9" in lines["pi-ok"]
    assert lines["pi-stale"].rstrip().endswith("stale") and "2h ago" in lines["pi-stale"]
    assert f"rejected v{v3} (sample accuracy 0.094" in lines["pi-refuses"]
    assert lines["pi-behind"].rstrip().endswith(f"behind (v{v1} < v{v2})")
    assert "4.00*" in lines["pi-hot"] and "9.00*" in lines["pi-hot"] and lines["pi-hot"].rstrip().endswith("ok, throttled")
    assert "* measured while the device was throttled" in result.output
    assert "6 device(s): 1 behind, 1 last run, 2 ok, 1 rejected, 1 stale" in result.output


def test_stale_after_counts_in_the_devices_own_intervals(server, fleet):
    model, *_ = fleet
    rows = {r["device"]: r for r in json.loads(edgeq(server, "fleet", model, "--json", "--stale-after", "10").stdout)}
    assert "stale" not in rows["pi-stale"]["flags"], "2 h is under 10 intervals of 15 min"
    bad = edgeq(server, "fleet", model, "--stale-after", "0")
    assert bad.exit_code == contract.ExitCode.BAD_CONFIG


def test_a_model_without_devices_says_so(server, client):
    model = new_model(client, "edgeq-fleet-empty")
    result = edgeq(server, "fleet", model)
    assert result.exit_code == 0 and "no device has reported" in result.output
    assert json.loads(edgeq(server, "fleet", model, "--json").stdout) == []


def test_versions_marks_figures_measured_while_throttled(server, fleet):
    model, v1, v2, v3 = fleet
    result = edgeq(server, "versions", model, "--devices", "--wide")
    assert result.exit_code == 0, result.output
    v2_line = next(line for line in result.output.splitlines() if line.startswith(f"{v2} "))
    assert "4.000*" in v2_line and "1.250 " in v2_line + " "
    assert "* measured while the device was throttled" in result.output
    rows = {r["version"]: r for r in json.loads(edgeq(server, "versions", model, "--json", "--devices").stdout)}
    assert rows[v2]["device_throttled"] == ["pi-hot"] and rows[v1]["device_throttled"] == []


def test_versions_shows_which_devices_refused_a_version(server, fleet):
    model, v1, v2, v3 = fleet
    result = edgeq(server, "versions", model, "--devices", "--wide")
    assert result.exit_code == 0, result.output
    assert "refused by" in result.output.splitlines()[0]
    v3_line = next(line for line in result.output.splitlines() if line.startswith(f"{v3} "))
    assert v3_line.rstrip().endswith("pi-refuses")
    rows = {r["version"]: r for r in json.loads(edgeq(server, "versions", model, "--json", "--devices").stdout)}
    assert rows[v3]["refused_by"] == ["pi-refuses"] and rows[v2]["refused_by"] == []


def test_versions_shows_one_row_per_version_with_fleet_aggregates_from_the_legacy_layout(server, fleet):
    """Reports in today's layout (device.<id>.* on the version's run) keep working: aggregated, one column set."""
    model, v1, v2, v3 = fleet
    result = edgeq(server, "versions", model, "--wide")
    assert result.exit_code == 0, result.output
    assert "pi-ok" not in result.output and "refused by" not in result.output
    v2_line = next(line for line in result.output.splitlines() if line.startswith(f"{v2} "))
    v3_line = next(line for line in result.output.splitlines() if line.startswith(f"{v3} "))
    assert " 2/0/1 " in v2_line and "2.625*" in v2_line, "2 healthy, pi-behind lags; median of 1.25 and 4.0, throttled"
    assert " 0/1/0 " in v3_line
    rows = {r["version"]: r for r in json.loads(edgeq(server, "versions", model, "--json").stdout)}
    assert rows[v2]["fleet"][contract.A_P99_WORST] == 9.0 and rows[v2]["fleet"][contract.A_THROTTLED] == 1
    assert rows[v2]["fleet_summary"].startswith("2 healthy, 0 rejected, 1 behind")


def test_right_after_a_rollback_a_device_on_its_alias_version_is_ok_and_any_other_mismatch_is_flagged(server, client):
    """The moment operators look: production went v3 → v2 (by number). A device that refused v3 and runs v2 is fine;
    a device still on v3 runs a version its alias no longer points to, though v3 is the newer one."""
    model = new_model(client, "edgeq-fleet-rollback")
    v1, _ = tiny_version(client, model)
    v2, _ = tiny_version(client, model)
    v3, run3 = tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
    report(client, run3, "pi-refused", v3, status=contract.STATUS_REJECTED, reason="health gate: p99 too high",
           alias=contract.DEFAULT_ALIAS)
    fleet_device(client, model, "pi-refused", running_version=v2, status=contract.STATUS_REJECTED,
                 reason="health gate: p99 too high")
    fleet_device(client, model, "pi-still-v3", running_version=v3)
    client.set_registered_model_alias(model, contract.DEFAULT_ALIAS, v2)  # the rollback, by number

    rows = {r["device"]: r for r in json.loads(edgeq(server, "fleet", model, "--json").stdout)}

    assert rows["pi-refused"]["status"] == "ok", rows["pi-refused"]
    assert rows["pi-still-v3"]["flags"] == [f"not on its alias (runs v{v3}, production is v{v2})"], rows["pi-still-v3"]
    assert v1  # an older version nobody runs
