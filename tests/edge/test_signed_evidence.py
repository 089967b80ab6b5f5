"""Signed device evidence on a real server: every report carries a param only the device's key could have written."""
from __future__ import annotations

import json
import uuid
from pathlib import Path

from edge import contract, evidence, identity
from edge.contract import ExitCode as Exit
from edge.heartbeat import FLEET_FILE, fleet_run_id
from edge.outbox import Outbox
from edge.puller import PullConfig, pull
from edge.registry_client import RegistryClient
from tests.edge.fault_proxy import FaultProxy
from tests.edge.reports import device_run_id

DEVICE = "pi-signed"
SINCE = "2026-12-01T10:00:00Z"


def _config(state: Path, model: str, **kw) -> PullConfig:
    return PullConfig(model=model, state_dir=state, device_id=DEVICE, runs=5, warmup=1, **kw)


def _params(rest, run_id: str) -> dict[str, str]:
    return {p["key"]: p["value"] for p in rest.run(run_id)["data"].get("params", [])}


def _signed(rest, state: Path) -> list[evidence.Payload]:
    """Every evidence param on the device's run, verified with the device's own public key (raises if one fails)."""
    public = identity.load_or_create(state).public_raw()
    params = _params(rest, device_run_id(state))
    return [evidence.verify(v, public) for k, v in params.items() if k.startswith(evidence.PARAM_PREFIX)]


def _reports(rest, state: Path, version: str) -> list[evidence.Payload]:
    return [p for p in _signed(rest, state) if p.kind == evidence.KIND_REPORT and p.version == version]


def test_a_report_carries_evidence_that_verifies_with_the_devices_key_and_the_marker(register, rest, registry,
                                                                                      fresh_model, tmp_path):
    mv = register(fresh_model, "int8", tags={contract.alias_since_tag(contract.DEFAULT_ALIAS): SINCE})

    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK

    run_id = device_run_id(tmp_path)
    params, metrics = _params(rest, run_id), rest.run_metrics(run_id)
    [report] = _reports(rest, tmp_path, mv.version)
    assert (report.device, report.model, report.alias, report.alias_since) == (DEVICE, fresh_model, "production", SINCE)
    assert report.sha256 == rest.version_tags(fresh_model, mv.version)[contract.TAG_SHA256]
    assert report.verdict == contract.STATUS_HEALTHY and report.throttled in ("yes", "no", "unknown")
    assert report.figures[contract.D_P50] == metrics[contract.version_key(mv.version, contract.D_P50)]
    assert params[contract.version_key(mv.version, contract.D_EVIDENCE)] == contract.EVIDENCE_MARK
    assert (params[contract.P_DEVICE_ID], params[contract.P_MODEL]) == (DEVICE, fresh_model)  # a new run says who
    # The metrics and tags people read in the UI are still there.
    assert rest.run_tags(run_id)[contract.version_key(mv.version, contract.D_STATUS)] == contract.STATUS_HEALTHY
    key_dir = tmp_path / identity.IDENTITY_DIR
    assert key_dir.stat().st_mode & 0o777 == 0o700 and (key_dir / identity.KEY_FILE).stat().st_mode & 0o777 == 0o600


def test_a_marker_someone_else_logged_first_does_not_stop_the_report(register, rest, registry, fresh_model, tmp_path):
    mv = register(fresh_model, "int8")
    run_id = fleet_run_id(registry, tmp_path, fresh_model, DEVICE)
    marker = contract.version_key(mv.version, contract.D_EVIDENCE)
    rest.call("POST", "runs/log-batch", json={"run_id": run_id, "params": [{"key": marker, "value": "x"}]})

    outcome = pull(_config(tmp_path, fresh_model), registry)

    assert outcome.code == Exit.OK and "reported to run" in outcome.message, outcome.message
    box = Outbox(tmp_path / "outbox")
    assert box.pending() == [] and box.dead_letters() == []
    assert len(_reports(rest, tmp_path, mv.version)) == 1 and _params(rest, run_id)[marker] == "x"


def test_a_damaged_key_is_set_aside_and_a_new_one_signs(register, rest, registry, fresh_model, tmp_path):
    mv = register(fresh_model, "int8")
    key_dir = tmp_path / identity.IDENTITY_DIR
    key_dir.mkdir(mode=0o700)
    (key_dir / identity.KEY_FILE).write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n")

    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK

    [aside] = key_dir.glob(identity.KEY_FILE + ".bad-*")
    assert "not a key" in aside.read_text()
    assert len(_reports(rest, tmp_path, mv.version)) == 1  # verified with the new key


def test_the_sequence_keeps_rising_past_a_garbage_seq_file(register, rest, registry, fresh_model, tmp_path):
    register(fresh_model, "fp32")
    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK
    before = [p.seq for p in _signed(rest, tmp_path)]
    (tmp_path / identity.IDENTITY_DIR / identity.SEQ_FILE).write_text("garbage\n")
    second = register(fresh_model, "int8")

    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK

    [report] = _reports(rest, tmp_path, second.version)
    assert len(before) == 2 and report.seq > max(before)  # v1's report and status, then v2's report
    seqs = [p.seq for p in _signed(rest, tmp_path)]
    assert len(seqs) == len(set(seqs)) == 4


def test_the_fleet_run_is_found_through_the_experiment_id_recorded_on_the_model(register, rest, registry,
                                                                               fresh_model, tmp_path):
    register(fresh_model, "int8")
    name = f"edgeq-fleet-recorded-{uuid.uuid4().hex[:8]}"
    experiment = rest.call("POST", "experiments/create", json={"name": name})["experiment_id"]
    rest.call("POST", "registered-models/set-tag",
              json={"name": fresh_model, "key": contract.TAG_FLEET_EXPERIMENT_ID, "value": experiment})
    rest.call("POST", "experiments/update", json={"experiment_id": experiment, "new_name": name + "-renamed"})

    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK

    run = rest.run(device_run_id(tmp_path))
    assert run["info"]["experiment_id"] == experiment
    assert json.loads((tmp_path / FLEET_FILE).read_text())["experiment_id"] == experiment
    named = rest.call("GET", "experiments/get-by-name", params={"experiment_name": contract.FLEET_EXPERIMENT},
                      ok_codes=("RESOURCE_DOES_NOT_EXIST",))
    if named:  # other tests' devices made it; this device has no run there
        found = rest.call("POST", "runs/search", json={
            "experiment_ids": [named["experiment"]["experiment_id"]],
            "filter": f"tags.`{contract.TAG_MODEL}` = '{fresh_model}'"})
        assert found.get("runs", []) == []


def test_a_run_made_before_identity_params_is_found_by_its_tags_and_given_them(register, rest, registry,
                                                                             fresh_model, tmp_path):
    register(fresh_model, "int8")
    old, _ = rest.create_run(rest.experiment_id(contract.FLEET_EXPERIMENT), {
        contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_MODEL: fresh_model, contract.TAG_DEVICE_ID: DEVICE})

    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK

    assert device_run_id(tmp_path) == old
    params = _params(rest, old)
    assert (params[contract.P_DEVICE_ID], params[contract.P_MODEL]) == (DEVICE, fresh_model)
    assert fleet_run_id(registry, tmp_path, fresh_model, DEVICE, fresh=True) == old  # now found by its params


def test_a_changed_running_version_sends_a_signed_status_and_a_quiet_run_costs_two_requests(
        server, register, rest, fresh_model, tmp_path):
    first = register(fresh_model, "fp32")
    proxy = FaultProxy(server.uri)
    try:
        client = RegistryClient(proxy.uri)
        assert pull(_config(tmp_path, fresh_model, heartbeat_s=0), client).code == Exit.OK
        signed = len(_signed(rest, tmp_path))
        before = len(proxy.requests_seen)
        assert pull(_config(tmp_path, fresh_model, heartbeat_s=0), client).code == Exit.OK
        quiet = proxy.requests_seen[before:]
        after_quiet = len(_signed(rest, tmp_path))
        second = register(fresh_model, "int8")
        assert pull(_config(tmp_path, fresh_model), client).code == Exit.OK
    finally:
        proxy.close()

    assert len(quiet) == 2 and "registered-models/alias" in quiet[0] and "runs/update" in quiet[1], quiet
    assert after_quiet == signed  # nothing signed or sent when nothing changed
    statuses = sorted((p for p in _signed(rest, tmp_path) if p.kind == evidence.KIND_STATUS), key=lambda p: p.seq)
    assert [p.version for p in statuses] == [first.version, second.version]
    latest = statuses[-1]
    assert (latest.device, latest.model, latest.alias, latest.verdict) == (DEVICE, fresh_model, "production", "healthy")
    assert latest.sha256 == rest.version_tags(fresh_model, second.version)[contract.TAG_SHA256]


def test_a_clock_skew_change_alone_signs_no_new_status(register, rest, registry, fresh_model, tmp_path, monkeypatch):
    """The heartbeat rewrites its tags when the clock's skew moves; what the device runs did not change, so no new
    signed status (a param row) is written."""
    register(fresh_model, "fp32")
    assert pull(_config(tmp_path, fresh_model, heartbeat_s=0), registry).code == Exit.OK
    statuses = [p for p in _signed(rest, tmp_path) if p.kind == evidence.KIND_STATUS]
    monkeypatch.setenv(contract.ENV_CLOCK_OFFSET_S, "600")  # the device's clock now runs ten minutes ahead
    assert pull(_config(tmp_path, fresh_model, heartbeat_s=0), registry).code == Exit.OK
    tags = {t["key"]: t["value"] for t in rest.run(device_run_id(tmp_path))["data"]["tags"]}
    assert abs(int(tags[contract.TAG_CLOCK_SKEW_S]) - 600) <= 1  # the heartbeat's tags did change (± the Date header's second)
    assert [p for p in _signed(rest, tmp_path) if p.kind == evidence.KIND_STATUS] == statuses
