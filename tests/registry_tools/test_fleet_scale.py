"""Device evidence at fleet scale, on a real server: the layout, the aggregates, the device's O(1) reads."""
from __future__ import annotations

import json
import time

import requests

from bench.fleet_scale import _Config, device_bodies, enrol, fleet_experiment, register, sim_key, write_devices
from edge import clock, contract
from edge.contract import ExitCode as Exit
from edge.heartbeat import status_params
from edge.puller import PullConfig, pull
from edge.registry_client import RegistryClient
from edge.report import ReportContext, build_report
from edge.runtime import Runtime
from tests.edge.fault_proxy import FaultProxy
from tests.edge.registry_rest import MlflowRest, register_fixture
from registry_tools import aggregate, enrolment
from registry_tools.rest_client import RestClient
from tests.registry_tools.devices import edgeq, new_model

HEALTHY = 24
LEGACY_REPORTS = 2000


def _rest(server, method: str, endpoint: str, **kw) -> dict:
    r = requests.request(method, f"{server.uri}/api/2.0/mlflow/{endpoint}", timeout=60, **kw)
    assert r.ok, r.text[:300]
    return r.json()


def _rejecting_device(server, model: str, mv, device: str, state_root) -> None:
    """An enrolled device whose gate refused ``mv``: the signed report edge/report.py builds, on its own run."""
    client = RegistryClient(server.uri)
    key = sim_key(device)
    enrolment.enroll(RestClient(server.uri), device, key.public_text(), [model])
    identity = {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_MODEL: model, contract.TAG_DEVICE_ID: device,
                contract.TAG_ALIAS: contract.CANARY_ALIAS, contract.TAG_LAST_STATUS: contract.STATUS_REJECTED}
    run_id = client.start_run(fleet_experiment(server.uri, model), device, identity, clock.now_ms())
    client.log_batch(run_id, {}, {}, params={contract.P_DEVICE_ID: device, contract.P_MODEL: model})
    reason = "health gate: sample accuracy 0.094 below bound 0.810"
    report = build_report(ReportContext(device, contract.CANARY_ALIAS, None, None,
                                        Runtime("ai-edge-litert", "2.3.0", "2.19", object), run_id, key, state_root),
                          mv, None, None, None, reason=reason)
    status = status_params(key, state_root, _Config(model), device, None, Exit.REJECTED, reason)
    client.log_batch(report.run_id, report.metrics, report.tags, report.timestamp_ms, report.step,
                     params={**report.params, **status})
    client.finish_run(run_id, clock.now_ms())


def test_aggregates_reach_the_version_run_and_the_logged_model_and_stay_put(server, client, tmp_path):
    model = new_model(client, "edgeq-scale")
    mv = register(server.uri, model)
    enrol(server.uri, model, 0, HEALTHY)
    write_devices(server.uri, model, mv, 0, HEALTHY, threads=2)
    for i in range(2):
        _rejecting_device(server, model, mv, f"pi-refuses-{i}", tmp_path)

    result = edgeq(server, "aggregate", model)
    assert result.exit_code == 0, result.output
    assert f"v{mv.version}: {HEALTHY} healthy, 2 rejected, 0 behind" in result.output

    # The logged model's page: MLflow's REST API for the version's model_id.
    source = _rest(server, "GET", "model-versions/get", params={"name": model, "version": mv.version})[
        "model_version"]["source"]
    model_id = source.removeprefix("models:/")
    logged = _rest(server, "GET", f"logged-models/{model_id}")["model"]
    note = {t["key"]: t["value"] for t in logged["info"]["tags"]}[aggregate.NOTE_TAG]
    on_model = {k.strip(" `"): float(v) for k, v in (line.strip("|").split("|") for line in note.splitlines()
                                                      if line.startswith("| `"))}
    assert on_model[contract.A_HEALTHY] == HEALTHY and on_model[contract.A_REJECTED] == 2
    assert on_model[contract.A_P99_WORST] >= on_model[contract.A_P50_WORST] >= on_model[contract.A_P50_MEDIAN] > 0
    assert on_model[contract.class_key("Cortex-A72", "devices")] == HEALTHY // 3
    # The version's page: its tags; its run holds the aggregates and nothing per device.
    tags = MlflowRest(server.uri).version_tags(model, mv.version)
    assert tags[contract.TAG_FLEET_SUMMARY].startswith(f"{HEALTHY} healthy, 2 rejected, 0 behind; p50 median")
    answer = requests.get(f"{server.uri}/api/2.0/mlflow/runs/get", params={"run_id": mv.run_id}, timeout=60)
    assert len(answer.content) < 10_000
    keys = [m["key"] for m in answer.json()["run"]["data"]["metrics"]]
    assert not any(k.startswith(contract.DEVICE_PREFIX) or contract.parse_version_key(k) for k in keys)

    # A quiet fleet adds no rows: the timer's next run writes nothing.
    again = edgeq(server, "aggregate", model)
    assert "0 version(s) updated" in again.output
    history = _rest(server, "GET", "metrics/get-history", params={"run_id": mv.run_id, "metric_key": contract.A_HEALTHY})
    assert len(history["metrics"]) == 1

    # edgeq versions: one row, the aggregates in it, no column per device.
    table = edgeq(server, "versions", model, "--wide").output
    line = next(x for x in table.splitlines() if x.startswith(f"{mv.version} "))
    assert f"{HEALTHY}/2/0" in line and "sim-" not in table
    detail = edgeq(server, "versions", model, "--devices", "--wide").output
    assert "sim-000000 p50 ms" in detail and "pi-refuses-0" in detail

    # edgeq fleet: the server filters; a cap is said out loud.
    capped = edgeq(server, "fleet", model, "--limit", "5")
    assert capped.exit_code == 0 and "showing the first 5 devices (--limit 5); more exist" in capped.output
    refused = json.loads(edgeq(server, "fleet", model, "--json", "--last-status", "rejected").stdout)
    assert sorted(r["device"] for r in refused) == ["pi-refuses-0", "pi-refuses-1"]
    assert all(r["flags"][0].startswith(f"rejected v{mv.version} (health gate") for r in refused)
    one = json.loads(edgeq(server, "fleet", model, "--json", "--device-id", "sim-000004").stdout)
    assert [(r["device"], r["running_version"], r["status"]) for r in one] == [("sim-000004", mv.version, "ok")]
    assert one[0]["latency_p50_ms"] == device_bodies(4, model, mv, "x")[0][f"v{mv.version}.latency_p50_ms"]

    # promote --from canary: evidence from the device runs, through the server's filter.
    promoted = edgeq(server, "promote", model, "--from", contract.CANARY_ALIAS, "--alias", "staging",
                     "--require-devices", str(HEALTHY), "--max-p99-ms", "all=1000")
    assert promoted.exit_code == 0, promoted.output
    assert f"{HEALTHY} device(s) count, {HEALTHY} required" in promoted.output
    assert "not counted  pi-refuses-0" in promoted.output


_LEGACY_KEPT = (contract.M_REPORTED_VERSION, contract.D_P50, contract.D_P99, contract.D_SAMPLE_ACCURACY, contract.D_STATUS)


def _legacy_reports(server, version_run: str, mv, count: int) -> None:
    """``count`` reports in today's layout (device.<id>.* on the version's run), as fast as log-batch allows:
    the bodies edge/report.py builds without a device run, cut to five keys each, 100 devices per request."""
    client = RegistryClient(server.uri)
    for first in range(0, count, 100):
        metrics: dict[str, float] = {}
        tags: dict[str, str] = {}
        for i in range(first, min(first + 100, count)):
            body, body_tags, _, _ = device_bodies(i, mv.name, mv, "")  # no device run: device.<id>.* keys
            metrics.update({k: v for k, v in body.items() if k.rpartition(".")[2] in _LEGACY_KEPT})
            tags.update({k: v for k, v in body_tags.items() if k.rpartition(".")[2] in _LEGACY_KEPT})
        client.log_batch(version_run, metrics, tags, int(time.time() * 1000))


def test_2000_legacy_reports_then_a_new_device_installs_reading_nothing_that_grows(server, client, tmp_path):
    rest = MlflowRest(server.uri)
    model = new_model(client, "edgeq-scale-legacy")
    registered = register_fixture(rest, model, "int8", alias=contract.DEFAULT_ALIAS)
    mv = RegistryClient(server.uri).version(model, registered.version)
    started = time.monotonic()
    _legacy_reports(server, registered.run_id, mv, LEGACY_REPORTS)
    print(f"{LEGACY_REPORTS} legacy reports written in {time.monotonic() - started:.1f} s")
    assert time.monotonic() - started < 60

    proxy = FaultProxy(server.uri)
    try:
        outcome = pull(PullConfig(model=model, state_dir=tmp_path, device_id="pi-2001", runs=3, warmup=1),
                       RegistryClient(proxy.uri))
        seen = list(proxy.requests_seen)
    finally:
        proxy.close()
    print(f"installed after {time.monotonic() - started:.1f} s")
    assert outcome.code == Exit.OK, outcome.message
    assert not any("runs/get" in r for r in seen), f"the install read a whole run: {seen}"

    # The legacy reports still count: `edgeq aggregate` folds them into the version's aggregates.
    result = edgeq(server, "aggregate", model)
    assert f"v{registered.version}: {LEGACY_REPORTS + 1} healthy, 0 rejected" in result.output, result.output
