"""The one evidence reader on a real server: signed votes count once per enrolled device; forged, revoked, copied,
replayed and unsigned reports do not; a renamed fleet experiment changes nothing."""
from __future__ import annotations

import time
from pathlib import Path

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from edge import contract, evidence as signed, identity
from registry_tools import evidence
from tests.registry_tools.devices import edgeq, new_model, tiny_version

# Device ids here are ev-*: the enrolment register is the whole server's, and no other test's device may be enrolled here.


def _key(tmp_path: Path, device: str) -> identity.DeviceKey:
    return identity.load_or_create(tmp_path / device)


def _statement(key: identity.DeviceKey, device: str, model: str, version: str, verdict: str = contract.STATUS_HEALTHY,
               seq: int | None = None, p50: float = 1.0, kind: str = signed.KIND_REPORT) -> str:
    payload = signed.Payload(kind, device, model, seq if seq is not None else int(time.time() * 1000), 0, version,
                             "a" * 64, contract.DEFAULT_ALIAS, "", verdict, "" if verdict == contract.STATUS_HEALTHY else "bad",
                             "no", {contract.D_P50: p50})
    return signed.encode(payload, key.sign)


def _fleet_run(client: MlflowClient, model: str, device: str, *values: str, version: str | None = None,
               tags: dict[str, str] | None = None) -> str:
    """A device run as the puller makes it: identity params, the signed values, the marker of ``version``."""
    experiment = client.get_registered_model(model).tags[contract.TAG_FLEET_EXPERIMENT_ID]
    run_id = client.create_run(experiment).info.run_id
    params = {contract.P_DEVICE_ID: device, contract.P_MODEL: model, **{signed.param_key(v): v for v in values}}
    if version:
        params[contract.version_key(version, contract.D_EVIDENCE)] = contract.EVIDENCE_MARK
    run_tags = {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_DEVICE_ID: device, contract.TAG_MODEL: model,
                **(tags or {})}
    client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                     tags=[RunTag(k, v) for k, v in run_tags.items()])
    return run_id


def _enroll(server, device: str, key: identity.DeviceKey, *models: str) -> None:
    args = [a for m in models for a in ("--model", m)]
    result = edgeq(server, "device", "enroll", device, "--key", key.public_text(), *args)
    assert result.exit_code == 0, result.output


def test_only_verified_statements_of_enrolled_devices_vote(server, client, tmp_path):
    model = new_model(client, "edgeq-evidence", accept_unsigned=False)
    version, _ = tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
    keys = {d: _key(tmp_path, d) for d in ("ev-a", "ev-b", "ev-evil")}
    for device, key in keys.items():
        _enroll(server, device, key, model)
    _fleet_run(client, model, "ev-a", _statement(keys["ev-a"], "ev-a", model, version), version=version)
    _fleet_run(client, model, "ev-b", _statement(keys["ev-b"], "ev-b", model, version, seq=5,
                                                 verdict=contract.STATUS_REJECTED),
               _statement(keys["ev-b"], "ev-b", model, version, seq=9), version=version)  # newest: healthy
    # pi-evil: claims pi-a with its own key, speaks about another model, and writes an unsigned rejection as pi-c
    _fleet_run(client, model, "ev-a", _statement(keys["ev-evil"], "ev-a", model, version, verdict=contract.STATUS_REJECTED),
               _statement(keys["ev-evil"], "ev-evil", "other-model", version), version=version)
    _fleet_run(client, model, "ev-c", version=version,
               tags={contract.version_key(version, contract.D_STATUS): contract.STATUS_REJECTED})
    # a copy of pi-b's old rejection, posted again elsewhere, is the same statement and the older one
    _fleet_run(client, model, "ev-evil", _statement(keys["ev-b"], "ev-b", model, version, seq=5,
                                                   verdict=contract.STATUS_REJECTED), version=version)

    found = evidence.for_alias(client, model, contract.DEFAULT_ALIAS)

    assert {d: r.status for d, r in found.reports.items()} == {"ev-a": contract.STATUS_HEALTHY,
                                                              "ev-b": contract.STATUS_HEALTHY}
    assert all(r.trust == "signed" for r in found.reports.values())
    assert [u.device for u in found.unverified] == ["ev-a"] and "bad signature" in found.unverified[0].why
    assert found.unsigned == 1 and any("1 unsigned report(s) not counted" in n for n in found.notes())

    counted = evidence.for_alias(client, model, contract.DEFAULT_ALIAS, accept_unsigned=True)
    assert counted.reports["ev-c"].trust == "unsigned" and counted.reports["ev-c"].status == contract.STATUS_REJECTED
    assert any("COUNTED (--accept-unsigned)" in n for n in counted.notes())

    assert edgeq(server, "device", "revoke", "ev-a").exit_code == 0  # counts from the next read
    after = evidence.for_alias(client, model, contract.DEFAULT_ALIAS)
    assert set(after.reports) == {"ev-b"} and any("revoked" in u.why for u in after.unverified)


def test_a_renamed_fleet_experiment_and_a_decoy_change_nothing(server, client, tmp_path):
    model = new_model(client, "edgeq-evidence-rename", accept_unsigned=False)
    version, _ = tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
    key = _key(tmp_path, "ev-r")
    _enroll(server, "ev-r", key, model)
    _fleet_run(client, model, "ev-r", _statement(key, "ev-r", model, version, verdict=contract.STATUS_REJECTED),
               version=version)
    experiment = client.get_registered_model(model).tags[contract.TAG_FLEET_EXPERIMENT_ID]
    client.rename_experiment(experiment, f"renamed-{model}")
    decoy = client.create_experiment(contract.FLEET_EXPERIMENT)  # what the next new device used to create
    try:
        found = evidence.for_alias(client, model, contract.DEFAULT_ALIAS)
        assert found.reports["ev-r"].status == contract.STATUS_REJECTED and found.trust.experiment_recorded
    finally:  # the session's other tests share the fleet experiment
        client.rename_experiment(decoy, f"decoy-{model}")
        client.delete_experiment(decoy)
        client.rename_experiment(experiment, contract.FLEET_EXPERIMENT)


def test_enrolment_errors_are_one_line(server, client, tmp_path):
    model = new_model(client, "edgeq-evidence-cli", accept_unsigned=False)
    bad = edgeq(server, "device", "enroll", "ev-z", "--key", "ssh-ed25519 AAAA", "--model", model)
    assert bad.exit_code == contract.ExitCode.BAD_CONFIG and len(bad.output.strip().splitlines()) == 1, bad.output
    assert "ed25519:" in bad.output
    unknown = edgeq(server, "device", "enroll", "ev-z", "--key", _key(tmp_path, "ev-z").public_text(), "--model", "no-such-model")
    assert unknown.exit_code == contract.ExitCode.BAD_CONFIG and "unknown model" in unknown.output
    assert edgeq(server, "device", "revoke", "ev-never").exit_code == contract.ExitCode.BAD_CONFIG
    _enroll(server, "ev-z", _key(tmp_path, "ev-z"), model)
    listed = edgeq(server, "device", "list", "--model", model)
    assert "ev-z" in listed.output and model in listed.output


def test_a_device_with_a_key_per_model_keeps_both(server, client, tmp_path):
    """One device pulling two models from two state directories signs with two keys: enrolling the second keeps the first."""
    first, second = (new_model(client, f"edgeq-evidence-two-{i}", accept_unsigned=False) for i in (1, 2))
    keys = {m: identity.load_or_create(tmp_path / m) for m in (first, second)}
    for model, key in keys.items():
        version, _ = tiny_version(client, model, alias=contract.DEFAULT_ALIAS)
        _enroll(server, "ev-two", key, model)
        _fleet_run(client, model, "ev-two", _statement(key, "ev-two", model, version), version=version)
    for model in (first, second):
        assert set(evidence.for_alias(client, model, contract.DEFAULT_ALIAS).reports) == {"ev-two"}, model
    listed = edgeq(server, "device", "list", "--model", second)
    assert "ev-two" in listed.output and first not in listed.output
