"""Time the fleet can trust: a device clock in 2030 or an hour behind, a real puller, a real server, `edgeq fleet`."""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from edge import clock, contract
from edge.contract import ExitCode as Exit
from edge.puller import PullConfig, pull
from edge.registry_client import RegistryClient
from tests.edge.registry_rest import MlflowRest, register_fixture
from tests.registry_tools.devices import edgeq, fleet_device, new_model

YEAR_2030 = 1893456000.0


@pytest.fixture(autouse=True)
def _fresh_clock():
    yield
    clock.CLOCK.skew_s = None  # the next answer sets it again; no skew leaks into other tests


def _pull(server, model: str, state, device: str, offset_s: float, monkeypatch) -> None:
    monkeypatch.setenv(contract.ENV_CLOCK_OFFSET_S, str(offset_s))
    config = PullConfig(model=model, state_dir=state, device_id=device, runs=3, warmup=1)
    outcome = pull(config, RegistryClient(server.uri))
    monkeypatch.delenv(contract.ENV_CLOCK_OFFSET_S)
    assert outcome.code == Exit.OK, outcome.message


def test_a_wrong_device_clock_is_flagged_and_neither_fresh_nor_stale(server, client, tmp_path, monkeypatch):
    model = new_model(client, "edgeq-clock")
    register_fixture(MlflowRest(server.uri), model, "int8", alias=contract.DEFAULT_ALIAS)
    _pull(server, model, tmp_path / "ahead", "pi-2030", YEAR_2030 - time.time(), monkeypatch)
    _pull(server, model, tmp_path / "behind", "pi-behind", -3600, monkeypatch)
    _pull(server, model, tmp_path / "right", "pi-right", 0, monkeypatch)

    result = edgeq(server, "fleet", model, "--json")
    assert result.exit_code == 0, result.output
    rows = {r["device"]: r for r in json.loads(result.stdout)}
    now = datetime.now(timezone.utc)
    for device in rows:
        seen = datetime.fromisoformat(rows[device]["last_seen"])
        assert abs((now - seen).total_seconds()) < 120, f"{device}: last seen is the server's time, not the device's"
        assert "stale" not in rows[device]["flags"], device
    assert rows["pi-2030"]["status"] != "ok" and rows["pi-2030"]["flags"][0].startswith("clock ahead by")
    assert rows["pi-2030"]["clock_skew_s"] > 86400 * 365
    assert rows["pi-behind"]["flags"] == ["clock behind by 1.0 h"], "an hour behind: flagged, not stale"
    assert abs(rows["pi-behind"]["clock_skew_s"] + 3600) <= 2
    assert rows["pi-right"]["status"] == "ok" and rows["pi-right"]["clock_skew_s"] == 0

    table = edgeq(server, "fleet", model, "--wide").output
    assert "clock ahead by" in table and "clock behind by 1.0 h" in table
    assert "3 device(s): 2 clock, 1 ok" in table


def test_the_device_run_starts_and_ends_at_server_time(server, client, tmp_path, monkeypatch):
    model = new_model(client, "edgeq-clock-run")
    rest = MlflowRest(server.uri)
    register_fixture(rest, model, "int8", alias=contract.DEFAULT_ALIAS)
    _pull(server, model, tmp_path / "s", "pi-2030", YEAR_2030 - time.time(), monkeypatch)
    experiment = rest.experiment_id(contract.FLEET_EXPERIMENT)
    run = rest.call("POST", "runs/search", json={"experiment_ids": [experiment],
                                                 "filter": f"tags.`{contract.TAG_MODEL}` = '{model}'"})["runs"][0]
    for field in ("start_time", "end_time"):
        assert abs(int(run["info"][field]) / 1000 - time.time()) < 120, field


def test_a_last_seen_in_the_future_never_shows_ok(server, client):
    """A run written by an older puller whose clock ran ahead: its heartbeat is stamped in the future."""
    model = new_model(client, "edgeq-clock-future")
    fleet_device(client, model, "pi-future", running_version=None, seen_s_ago=-10 * 86400)
    row = json.loads(edgeq(server, "fleet", model, "--json").stdout)[0]
    assert row["status"] != "ok" and any(f.startswith("clock: last seen in the future") for f in row["flags"])
    assert "in the future" in edgeq(server, "fleet", model).output
