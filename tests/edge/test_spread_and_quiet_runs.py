"""A fleet spreads over its interval, retries a busy server within its deadline, and a quiet run sends one request."""
from __future__ import annotations

import shutil
import subprocess
import time
from collections import Counter

import pytest

from edge import clock, contract, schedule
from edge.contract import ExitCode as Exit
from edge.puller import PullConfig, pull
from edge.registry_client import Deadline, RegistryClient, backoff_s

LOCKED = b'{"error_code": "TEMPORARILY_UNAVAILABLE", "message": "(sqlite3.OperationalError) database is locked"}'


def _config(state, model, **kw) -> PullConfig:
    return PullConfig(model=model, state_dir=state, device_id="pi-spread", runs=5, warmup=1, **kw)


def _device_run(rest, model: str) -> dict:
    runs = rest.call("POST", "runs/search", json={
        "experiment_ids": [rest.experiment_id(contract.FLEET_EXPERIMENT)],
        "filter": f"tags.`{contract.TAG_MODEL}` = '{model}' and tags.`{contract.TAG_DEVICE_ID}` = 'pi-spread'"})["runs"]
    assert len(runs) == 1
    return runs[0]


# -- spread ----------------------------------------------------------------------------------------------------------

def test_a_device_keeps_its_slot_and_a_fleet_spreads_over_the_interval():
    devices = [f"pi-{i:05d}" for i in range(6000)]
    slots = [schedule.slot_s(d, 15) for d in devices]
    assert slots == [schedule.slot_s(d, 15) for d in devices], "a device keeps its slot"
    assert all(0 <= s < 900 for s in slots)
    per_minute = Counter(s // 60 for s in slots)
    assert len(per_minute) == 15 and max(per_minute.values()) < 1.2 * len(devices) / 15, per_minute
    assert max(Counter(slots).values()) <= 20, "no second holds more than a handful of devices"
    key = schedule.schedule_key("m", "production", "/s")
    lines = {schedule.cron_line(["edgeq-pull"], 15, key, offset_s=s).split(" edgeq-pull")[0] for s in slots}
    assert len(lines) >= 890, "nearly every second of the interval is some device's slot"


def test_the_cron_line_and_the_systemd_timer_start_in_the_devices_slot():
    key = schedule.schedule_key("m", "production", "/s")
    assert schedule.cron_line(["p"], 15, key, offset_s=7 * 60 + 23).startswith("7,22,37,52 * * * * sleep 23; p ")
    assert schedule.cron_line(["p"], 120, key, offset_s=3600 + 5 * 60).startswith("5 1-23/2 * * * p ")
    timer = schedule.systemd_units(["p"], 15, offset_s=7 * 60 + 23)["edgeq-pull.timer"]
    assert "OnCalendar=*-*-* *:07/15:23" in timer and "AccuracySec=1s" in timer
    assert "OnUnitActiveSec" not in timer and "RandomizedDelaySec" not in timer, "a slot that moves is no slot"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze not installed")
@pytest.mark.parametrize("every", [1, 10, 15, 60, 120, 24 * 60])
def test_systemd_reads_the_timer_calendar(every):
    spec = schedule.on_calendar(every, schedule.slot_s("pi-7", every))
    parsed = subprocess.run(["systemd-analyze", "calendar", "--iterations=2", spec], capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr


# -- retries ---------------------------------------------------------------------------------------------------------

def test_the_wait_before_a_retry_is_jittered_grows_and_honours_retry_after():
    draws = [backoff_s(0) for _ in range(200)]
    assert all(0 <= d <= 1.0 for d in draws) and len(set(draws)) > 100, "devices that failed together spread out"
    assert max(backoff_s(3) for _ in range(200)) > 1.0 and all(backoff_s(10) <= 8.0 for _ in range(50))
    assert all(backoff_s(0, "3") >= 3 for _ in range(20)) and backoff_s(0, "600") == 8.0


def test_a_locked_store_on_the_heartbeat_is_retried_and_the_device_is_seen(register, rest, proxy, fresh_model, tmp_path):
    register(fresh_model, "int8")
    assert pull(_config(tmp_path, fresh_model, heartbeat_s=0), RegistryClient(proxy.uri)).code == Exit.OK
    before = int(_device_run(rest, fresh_model)["info"]["end_time"])
    time.sleep(0.01)
    proxy.add("runs/update", "status", status=503, error_body=LOCKED, times=2)
    seen = proxy.count("runs/update")

    assert pull(_config(tmp_path, fresh_model, heartbeat_s=0), RegistryClient(proxy.uri)).code == Exit.OK

    assert proxy.count("runs/update") - seen == 3, "two busy answers, then the heartbeat that lands"
    assert int(_device_run(rest, fresh_model)["info"]["end_time"]) > before, "the heartbeat was not lost"


def test_a_busy_server_on_resolve_and_on_the_report_costs_a_wait_not_the_update(register, rest, proxy, fresh_model, tmp_path):
    version = register(fresh_model, "int8")
    proxy.add("registered-models/alias", "status", status=429, times=1)
    proxy.add("runs/log-batch", "status", status=503, error_body=LOCKED, times=2)

    outcome = pull(_config(tmp_path, fresh_model), RegistryClient(proxy.uri))

    assert outcome.code == Exit.OK and outcome.version == version.version, outcome.message
    assert "queued" not in outcome.message and not list((tmp_path / "outbox").glob("*.json")), "the report went out"


def test_a_server_busy_past_the_deadline_ends_the_run_at_its_deadline(register, proxy, fresh_model, tmp_path):
    register(fresh_model, "int8")
    proxy.add("registered-models/alias", "status", status=503, error_body=LOCKED)
    started = time.monotonic()

    outcome = pull(_config(tmp_path, fresh_model), RegistryClient(proxy.uri, deadline=Deadline(4)))

    assert outcome.code == Exit.UNREACHABLE and "database is locked" in outcome.message, outcome.message
    assert time.monotonic() - started < 4 + 2 and proxy.count("registered-models/alias") >= 2


# -- one request per quiet run ---------------------------------------------------------------------------------------

def test_a_quiet_device_sends_at_most_1_25_requests_per_run_and_a_change_at_once(
        register, rest, proxy, fresh_model, tmp_path, monkeypatch):
    first = register(fresh_model, "fp32")
    start = clock.now_ms()
    fake = {"now": start}
    monkeypatch.setattr(clock, "now_ms", lambda: fake["now"])
    client = RegistryClient(proxy.uri)
    assert pull(_config(tmp_path, fresh_model), client).code == Exit.OK  # installs: reports and beats at once
    run = _device_run(rest, fresh_model)
    tags = {t["key"]: t["value"] for t in run["data"]["tags"]}
    assert (tags[contract.TAG_INTERVAL_S], tags[contract.TAG_HEARTBEAT_S]) == ("900", "3600")

    before, ends = len(proxy.requests_seen), []
    for i in range(1, 9):  # two hours of 15-minute runs, nothing changing
        fake["now"] = start + i * 900_000
        assert pull(_config(tmp_path, fresh_model), client).code == Exit.OK
        ends.append(int(_device_run(rest, fresh_model)["info"]["end_time"]))
    quiet = proxy.requests_seen[before:]

    assert sum("registered-models/alias" in r for r in quiet) == 8
    assert [r for r in quiet if "registered-models/alias" not in r] == ["POST /api/2.0/mlflow/runs/update"] * 2, quiet
    assert len(quiet) / 8 <= 1.25
    assert ends[3] == start + 4 * 900_000 and ends[7] == start + 8 * 900_000, "last seen moves once an hour"

    second = register(fresh_model, "int8")
    fake["now"] = start + 9 * 900_000
    assert pull(_config(tmp_path, fresh_model), client).code == Exit.OK
    run = _device_run(rest, fresh_model)
    assert int(run["info"]["end_time"]) == fake["now"], "a change is reported at once, not at the next heartbeat"
    assert {t["key"]: t["value"] for t in run["data"]["tags"]}[contract.TAG_RUNNING_VERSION] == second.version != first.version
