"""A staged rollout on the device: a stable hash of (device, version) under the share takes it, the rest keep the fallback."""
from __future__ import annotations

import pytest

from edge import contract, rollout_share
from edge.contract import ExitCode as Exit
from edge.puller import PullConfig, pull
from edge.registry_client import RegistryClient
from edge.rollout_share import Share
from edge.state import DeviceState

IDS = [f"pi-{i:05d}" for i in range(20_000)]


def test_the_share_is_stable_grows_without_dropping_anyone_and_differs_between_versions():
    inside = {p: {d for d in IDS if rollout_share.takes(d, "7", p)} for p in (5, 25, 100)}
    assert inside[5] <= inside[25] <= inside[100] == set(IDS), "a share that grows never drops a device"
    for p in (5, 25):
        assert abs(len(inside[p]) / len(IDS) - p / 100) < 0.01, (p, len(inside[p]))
    assert inside[5] == {d for d in IDS if rollout_share.takes(d, "7", 5)}, "stable"
    other = {d for d in IDS if rollout_share.takes(d, "8", 5)}
    assert len(other & inside[5]) < 0.2 * len(inside[5]), "each version picks its own first devices"
    assert not any(rollout_share.takes(d, "7", 0) for d in IDS[:500])


@pytest.mark.parametrize("text, problem", [
    ("five", "not JSON"), ("[5]", "not a JSON object"), ('{"share": "5", "fallback": "3"}', "share must be"),
    ('{"share": 150, "fallback": "3"}', "share must be"), ('{"share": NaN, "fallback": "3"}', "share must be"),
    ('{"share": true, "fallback": "3"}', "share must be"), ('{"share": 5}', "fallback must be"),
    ('{"share": 5, "fallback": "../3"}', "whole number"),
])
def test_an_unreadable_tag_is_refused_with_what_is_wrong(text, problem):
    with pytest.raises(ValueError, match=problem):
        rollout_share.parse(text)


def test_the_tag_round_trips_and_is_per_alias():
    tags = {contract.rollout_tag("production"): Share(5, "3").encode()}
    assert rollout_share.share_of(tags, "production") == Share(5.0, "3")
    assert rollout_share.share_of(tags, "canary") is None


def _pick(version: str, percent: float) -> tuple[str, str]:
    inside = next(d for d in IDS if rollout_share.takes(d, version, percent))
    outside = next(d for d in IDS if not rollout_share.takes(d, version, percent))
    return inside, outside


def _roll(rest, model: str, version: str, share: Share, alias: str = contract.DEFAULT_ALIAS) -> None:
    rest.call("POST", "model-versions/set-tag", json={"name": model, "version": version,
                                                       "key": contract.rollout_tag(alias), "value": share.encode()})
    rest.call("POST", "registered-models/alias", json={"name": model, "alias": alias, "version": version})


def test_inside_the_share_takes_the_version_outside_keeps_the_fallback_without_a_download(
        register, rest, proxy, fresh_model, tmp_path):
    old = register(fresh_model, "fp32").version
    new = register(fresh_model, "int8", alias=None).version
    inside, outside = _pick(new, 10)
    client = RegistryClient(proxy.uri)

    def device(name: str, **kw) -> tuple:
        config = PullConfig(model=fresh_model, state_dir=tmp_path / name, device_id=name, runs=3, warmup=1, **kw)
        outcome = pull(config, client)
        current = DeviceState(tmp_path / name).current()
        return outcome, current.version if current else None

    for name in (inside, outside):
        assert device(name)[1] == old
    _roll(rest, fresh_model, new, Share(10, old))

    before = len(proxy.requests_seen)
    outcome, running = device(outside)
    assert (outcome.code, running) == (Exit.OK, old), outcome.message
    assert f"outside the 10 % stage of v{new}; v{old} keeps serving" in outcome.message
    seen = proxy.requests_seen[before:]
    assert not any("artifacts" in r or "model-versions/get" in r for r in seen), "a device outside the share costs no more"

    outcome, running = device(inside)
    assert (outcome.code, running) == (Exit.OK, new), outcome.message

    newcomer = next(d for d in IDS[::-1] if not rollout_share.takes(d, new, 10))
    outcome, running = device(newcomer)
    assert (outcome.code, running) == (Exit.OK, old), "a new device outside the share installs the fallback"

    _roll(rest, fresh_model, new, Share(1, old))  # a rollout started over with a smaller first step
    assert device(inside)[1] == new, "a device that took the version keeps it"
    assert device(outside, version=new)[1] == new, "a device pinned to a version takes it whatever the share"


def test_an_unreadable_rollout_tag_changes_nothing_and_says_so(register, rest, registry, fresh_model, tmp_path):
    old = register(fresh_model, "fp32").version
    new = register(fresh_model, "int8", alias=None).version
    config = PullConfig(model=fresh_model, state_dir=tmp_path, device_id="pi-garbled", runs=3, warmup=1)
    assert pull(config, registry).code == Exit.OK
    rest.call("POST", "model-versions/set-tag", json={"name": fresh_model, "version": new,
                                                       "key": contract.rollout_tag(contract.DEFAULT_ALIAS), "value": "{"})
    rest.call("POST", "registered-models/alias", json={"name": fresh_model, "alias": contract.DEFAULT_ALIAS, "version": new})
    outcome = pull(config, registry)
    assert outcome.code == Exit.BAD_CONFIG and "unreadable staged-rollout tag" in outcome.message, outcome.message
    assert "\n" not in outcome.message and DeviceState(tmp_path).current().version == old


def test_a_fallback_missing_from_the_server_is_bad_configuration(register, rest, registry, fresh_model, tmp_path):
    register(fresh_model, "fp32")
    new = register(fresh_model, "int8", alias=None).version
    _, outside = _pick(new, 1)
    _roll(rest, fresh_model, new, Share(1, "999"))
    outcome = pull(PullConfig(model=fresh_model, state_dir=tmp_path, device_id=outside, runs=3, warmup=1), registry)
    assert outcome.code == Exit.BAD_CONFIG and "fallback" in outcome.message, outcome.message
