"""``edgeq guard`` end to end: real server, real pullers on checked-in bundles, the alias moves back and says why."""
from __future__ import annotations

import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from edge import contract
from edge.limits import parse_p99
from edge.gate import GateLimits
from edge.puller import Exit, PullConfig, pull
from edge.registry_client import RegistryClient
from edge.state import DeviceState
from registry_tools import judge
from registry_tools.device_reports import DeviceReport
from tests.edge.registry_rest import MlflowRest, disagreeing_bundle, register_fixture
from tests.registry_tools.devices import edgeq, enroll, new_model, report, tiny_version

DEVICES = ("pi-ga", "pi-gb", "pi-gc")  # enrolled here only: other tests' devices are enrolled for their own models


def _pull(server, model: str, root: Path, device: str, gate: GateLimits = GateLimits()) -> Exit:
    config = PullConfig(model, root / device, device, alias=contract.DEFAULT_ALIAS, runs=5, warmup=1, gate=gate, interval_s=60)
    return pull(config, RegistryClient(server.uri)).code


def _production(client: MlflowClient, model: str) -> str:
    return str(client.get_registered_model(model).aliases[contract.DEFAULT_ALIAS])


def _history(server, model: str) -> list[dict]:
    return json.loads(edgeq(server, "history", model, "--json").stdout)


def test_devices_reject_a_worse_version_and_the_guard_moves_production_back(server, client, tmp_path):
    model = new_model(client, "edgeq-guard", accept_unsigned=False)
    for device in DEVICES:
        enroll(server, tmp_path / device, device, model)
    rest = MlflowRest(server.uri)
    good = register_fixture(rest, model, "int8", alias=None).version
    assert edgeq(server, "promote", model, good, "--reason", "first release").exit_code == 0
    assert [_pull(server, model, tmp_path, d) for d in DEVICES] == [Exit.OK] * 3

    # Registered at the fixture's 98 % but its sample disagrees: every device's own gate refuses it.
    worse = register_fixture(rest, model, "int8", alias=None, bundle=disagreeing_bundle("int8", tmp_path / "worse"))
    assert edgeq(server, "promote", model, worse.version).exit_code == 0
    assert [_pull(server, model, tmp_path, d) for d in DEVICES] == [Exit.REJECTED] * 3
    assert _production(client, model) == worse.version

    dry = edgeq(server, "guard", model, "--dry-run")
    assert dry.exit_code == contract.ExitCode.REJECTED, dry.output
    assert f"dry run: would move production from v{worse.version} back to v{good}" in dry.output
    assert _production(client, model) == worse.version and len(_history(server, model)) == 2

    moved = edgeq(server, "guard", model)
    assert moved.exit_code == contract.ExitCode.REJECTED, moved.output
    assert f"production moved from v{worse.version} back to v{good}" in moved.output
    assert [line.split()[:2] for line in moved.output.splitlines() if line.startswith(("  against", "  accepts"))] == [["against", d] for d in DEVICES]
    assert _production(client, model) == good

    latest = _history(server, model)[0]
    assert (latest["kind"], latest["by"], latest["from_version"], latest["to_version"]) == ("rollback", "guard", worse.version, good)
    assert latest["reason"].startswith(f"guard: 3 of 3 devices in the window against v{worse.version} (100%, limit 25%")
    assert all(f"{d} rejected it: health gate: sample" in latest["reason"] for d in DEVICES), latest["reason"]
    table = edgeq(server, "history", model).output.splitlines()
    assert "rollback" in table[2] and "guard" in table[2] and f"v{worse.version}" in table[2]

    run_tags = client.get_run(worse.run_id).data.tags
    assert run_tags[contract.TAG_GUARD_VERDICT] == contract.GUARD_ROLLED_BACK
    assert run_tags[contract.TAG_GUARD_RESTORED] == good
    assert "pi-gc rejected it: health gate: sample accuracy 0.0% (0/32)" in run_tags[contract.TAG_GUARD_REASON]
    assert client.get_model_version(model, worse.version).tags[contract.TAG_GUARD_VERDICT] == contract.GUARD_ROLLED_BACK

    cooling = edgeq(server, "guard", model)  # the guard does not judge what it just restored
    assert cooling.exit_code == contract.ExitCode.HELD and "judges production again after" in cooling.output
    # Idempotent: production is back in the good version's window, whose devices accept it.
    again = edgeq(server, "guard", model, "--cooldown", "0")
    assert again.exit_code == 0, again.output
    assert f"v{good} stays: 0 of 3 against" in again.output
    assert _production(client, model) == good and len(_history(server, model)) == 3
    for d in DEVICES:
        assert _pull(server, model, tmp_path, d) == Exit.OK
        assert DeviceState(tmp_path / d).current().version == good

    # Someone puts the worse version back with a plain client: the history shows it at once, the guard records it.
    MlflowClient(server.uri, registry_uri=server.uri).set_registered_model_alias(model, contract.DEFAULT_ALIAS, worse.version)
    shown = _history(server, model)[0]
    assert (shown["kind"], shown["from_version"], shown["to_version"], shown["at"]) == ("outside edgeq", good, worse.version, "")
    assert "outside edgeq" in edgeq(server, "history", model).output.splitlines()[2]

    guarded = edgeq(server, "guard", model)
    assert guarded.exit_code == contract.ExitCode.REJECTED, guarded.output
    assert "noticed production moved outside edgeq" in guarded.output and _production(client, model) == good
    kinds = [(e["kind"], e["by"], e["from_version"], e["to_version"]) for e in _history(server, model)]
    assert kinds[:2] == [("rollback", "guard", worse.version, good), ("outside edgeq", "unknown", good, worse.version)]
    assert _history(server, model)[1]["at"].endswith("+00:00"), "recorded when the guard noticed it"

    # A person wins: promoting the rolled-back version again takes saying so, and starts a new window.
    refused = edgeq(server, "promote", model, worse.version)
    assert refused.exit_code == contract.ExitCode.REJECTED and "--override-guard" in refused.output, refused.output
    override = edgeq(server, "promote", model, worse.version, "--override-guard", "--reason", "camera fixed on site")
    assert override.exit_code == 0, override.output
    latest = _history(server, model)[0]
    assert (latest["kind"], latest["to_version"]) == ("override", worse.version) and latest["by"]
    assert latest["reason"].startswith("camera fixed on site; overrides the guard's rollback on ")
    held = edgeq(server, "guard", model, "--cooldown", "0")  # before: rolled back at every tick on old refusals
    assert held.exit_code == contract.ExitCode.HELD, held.output
    assert "too few devices in the window: 0 voted, 3 needed" in held.output and _production(client, model) == worse.version
    token = client.get_model_version(model, worse.version).tags[contract.TAG_RETRY]
    # Devices that remembered refusing it try it once more, and report into the new window.
    assert [_pull(server, model, tmp_path, d) for d in DEVICES] == [Exit.REJECTED] * 3
    assert all(DeviceState(tmp_path / d).rejection_for(model, worse.version, worse_sha(client, model, worse.version)).retry
               == token for d in DEVICES)
    rolled = edgeq(server, "guard", model, "--cooldown", "0")
    assert rolled.exit_code == contract.ExitCode.REJECTED, rolled.output
    assert "3 of 3 devices in the window against" in _history(server, model)[0]["reason"]
    assert _production(client, model) == good


def worse_sha(client: MlflowClient, model: str, version: str) -> str:
    return client.get_model_version(model, version).tags[contract.TAG_SHA256]


def test_a_fleet_that_accepts_the_new_version_is_left_alone(server, client, tmp_path):
    model = new_model(client, "edgeq-guard-ok", accept_unsigned=False)
    for device in DEVICES + ("pi-gstrict",):
        enroll(server, tmp_path / device, device, model)
    rest = MlflowRest(server.uri)
    first = register_fixture(rest, model, "int8", alias=None).version
    assert edgeq(server, "promote", model, first).exit_code == 0
    second = register_fixture(rest, model, "fp16", alias=None)
    assert edgeq(server, "promote", model, second.version).exit_code == 0
    assert [_pull(server, model, tmp_path, d) for d in DEVICES] == [Exit.OK] * 3
    # One device of four refuses it on a limit of its own: 25 % is not above the default 25 %.
    assert _pull(server, model, tmp_path, "pi-gstrict", GateLimits(max_p99_ms=0.000001)) == Exit.REJECTED
    before = _history(server, model)

    result = edgeq(server, "guard", model)

    assert result.exit_code == 0, result.output
    assert f"v{second.version} stays: 1 of 4 against (25% ≤ 25%)" in result.output
    assert _production(client, model) == second.version
    assert _history(server, model) == before
    assert contract.TAG_GUARD_VERDICT not in client.get_run(second.run_id).data.tags


def test_too_few_reports_move_nothing_and_limits_count_healthy_devices_against(server, client):
    model = new_model(client, "edgeq-guard-few")
    v1, run1 = tiny_version(client, model)
    v2, run2 = tiny_version(client, model)
    assert edgeq(server, "promote", model, v1).exit_code == 0
    assert edgeq(server, "promote", model, v2).exit_code == 0
    for device in ("pi-a", "pi-b"):
        report(client, run2, device, v2, status=contract.STATUS_REJECTED, reason="p99 too high", alias="production")
    few = edgeq(server, "guard", model)
    assert few.exit_code == contract.ExitCode.HELD, few.output
    assert "hold: too few devices in the window: 2 voted, 3 needed; nothing moved" in few.output
    assert _production(client, model) == v2

    # Healthy reports, but slower than the same devices measured the replaced version.
    for device in ("pi-a", "pi-b", "pi-c"):
        report(client, run1, device, v1, p50=1.0, alias="production")
        report(client, run2, device, v2, p50=3.0 if device != "pi-c" else 1.1, alias="production")
    ok = edgeq(server, "guard", model, "--max-rejected-fraction", "0.5")
    assert ok.exit_code == 0, ok.output
    slow = edgeq(server, "guard", model, "--max-rejected-fraction", "0.5", "--max-slowdown", "2")
    assert slow.exit_code == contract.ExitCode.HELD, slow.output  # reports older than the last evaluation: must persist
    assert "accepts  pi-a  p50 3.00 ms" in slow.output and "3.00× its p50 on the replaced version" in slow.output
    slow = edgeq(server, "guard", model, "--max-rejected-fraction", "0.5", "--max-slowdown", "2")
    assert slow.exit_code == contract.ExitCode.REJECTED, slow.output
    assert "median p50 ratio 3.00× over 3 paired devices > 2×" in slow.output
    assert _production(client, model) == v1

    # v1 was restored by the guard: a breach on it is left for a person, never a further step back.
    for device in ("pi-a", "pi-b", "pi-c"):
        report(client, run1, device, v1, status=contract.STATUS_REJECTED, reason="camera changed", alias="production")
    held = edgeq(server, "guard", model, "--cooldown", "0")
    assert held.exit_code == contract.ExitCode.REJECTED and "restored by the guard itself" in held.output
    assert _production(client, model) == v1


def test_bad_limits_are_one_line_errors(server, client):
    model = new_model(client, "edgeq-guard-bad")
    for args, words in ((("--min-devices", "0"), "--min-devices"), (("--max-rejected-fraction", "1.5"), "--max-rejected-fraction"),
                        (("--max-p99-ms", "pi=fast"), "--max-p99-ms")):
        result = edgeq(server, "guard", model, *args)
        assert result.exit_code == contract.ExitCode.BAD_CONFIG and words in result.output, result.output
    missing = edgeq(server, "guard", model)
    assert missing.exit_code == contract.ExitCode.BAD_CONFIG and "has no alias 'production'" in missing.output


def _report(device: str, status: str, throttled: str = "no", **metrics: float) -> DeviceReport:
    return DeviceReport(device, dict(metrics), {contract.D_STATUS: status, contract.D_MODEL_VERSION: "7",
                                                contract.D_ALIAS: "production", contract.D_THROTTLED: throttled})


def test_device_rules_without_a_server():
    limits = judge.Limits(max_p99_ms=parse_p99(["20", "pi-slow=50"]), max_accuracy_drop=5.0)
    window = judge.Window("production", "7", "", "")

    def vote(report: DeviceReport, accuracy: float) -> judge.Vote:
        return judge.vote(report, window, limits, accuracy)

    healthy = _report("pi-a", contract.STATUS_HEALTHY, **{contract.D_P99: 30.0, contract.D_SAMPLE_ACCURACY: 0.95})
    assert vote(healthy, 0.96).vote == judge.AGAINST  # 30 ms > all=20
    hot = _report("pi-a", contract.STATUS_HEALTHY, "yes", **{contract.D_P99: 30.0, contract.D_SAMPLE_ACCURACY: 0.95})
    assert vote(hot, 0.96).vote == judge.FOR  # throttled: no vote on latency
    own_limit = _report("pi-slow", contract.STATUS_HEALTHY, **{contract.D_P99: 30.0, contract.D_SAMPLE_ACCURACY: 0.95})
    assert vote(own_limit, 0.96).vote == judge.FOR  # its own 50 ms limit
    assert vote(own_limit, 0.99).vote == judge.FOR  # 4 points below ≤ 5
    lower = _report("pi-slow", contract.STATUS_HEALTHY, **{contract.D_P99: 30.0, contract.D_SAMPLE_ACCURACY: 0.90})
    assert "points below registered" in vote(lower, 0.99).why  # 9 points below > 5
    silent = DeviceReport("pi-c", {}, {contract.D_MODEL_VERSION: "7", contract.D_ALIAS: "production"})
    assert vote(silent, 0.96).vote == judge.EXCLUDED, "no health status: neither for nor against"
    canary = DeviceReport("pi-d", {}, {contract.D_STATUS: contract.STATUS_REJECTED, contract.D_ALIAS: "canary"})
    assert vote(canary, 0.96).why == "follows canary, not production"
