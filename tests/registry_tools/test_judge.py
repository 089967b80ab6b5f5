"""The judge on a real server with signed device reports: the window, the whole window, three outcomes, persistence,
throttled figures, the per-device slowdown, a conditional move; each case as an operator met it."""
from __future__ import annotations

import itertools
import json
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mlflow.entities import Param, RunTag
from mlflow.tracking import MlflowClient

from edge import contract, evidence as signed, identity
from registry_tools import judge, promotion
from registry_tools.device_reports import DeviceReport
from tests.registry_tools.devices import edgeq, new_model, tiny_version

PROD = contract.DEFAULT_ALIAS
YEAR_MS = 365 * 86400 * 1000
_seq = itertools.count(int(time.time() * 1000))
LATENCY_REFUSAL = "health gate: p99 latency 9.10 ms is above --max-p99-ms 5"


def _now_ms() -> int:
    return int(time.time() * 1000)


class Fleet:
    """Enrolled devices that post signed reports exactly as edgeq-pull does (edge/report.py)."""

    def __init__(self, server, client: MlflowClient, model: str, tmp_path: Path):
        self.server, self.client, self.model, self.tmp = server, client, model, tmp_path
        self.keys: dict[str, identity.DeviceKey] = {}
        self.experiment = client.get_registered_model(model).tags[contract.TAG_FLEET_EXPERIMENT_ID]

    def key(self, device: str) -> identity.DeviceKey:
        if device not in self.keys:
            self.keys[device] = identity.load_or_create(self.tmp / device)
            result = edgeq(self.server, "device", "enroll", device, "--key", self.keys[device].public_text(),
                           "--model", self.model)
            assert result.exit_code == 0, result.output
        return self.keys[device]

    def since(self, version: str, alias: str = PROD) -> str:
        return self.client.get_model_version(self.model, version).tags.get(contract.alias_since_tag(alias), "")

    def report(self, device: str, version: str, *, verdict: str = contract.STATUS_HEALTHY, reason: str = "",
               alias: str = PROD, since: str | None = None, at_ms: int | None = None, throttled: str = "no",
               p50: float = 1.0, p99: float = 2.0) -> None:
        payload = signed.Payload(signed.KIND_REPORT, device, self.model, next(_seq), at_ms or _now_ms(), version, "a" * 64,
                                 alias, self.since(version, alias) if since is None else since, verdict, reason, throttled,
                                 {contract.D_P50: p50, contract.D_P99: p99, contract.D_SAMPLE_ACCURACY: 0.95,
                                  contract.D_SAMPLE_SIZE: 32.0})
        value = signed.encode(payload, self.key(device).sign)
        run_id = self.client.create_run(self.experiment).info.run_id
        params = {contract.P_DEVICE_ID: device, contract.P_MODEL: self.model, signed.param_key(value): value,
                  contract.version_key(version, contract.D_EVIDENCE): contract.EVIDENCE_MARK}
        tags = {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_DEVICE_ID: device, contract.TAG_MODEL: self.model}
        self.client.log_batch(run_id, params=[Param(k, v) for k, v in params.items()],
                              tags=[RunTag(k, v) for k, v in tags.items()])


def _production_model(server, client, prefix: str) -> tuple[str, str, str]:
    """A model whose production went v1 → v2 through edgeq (so v2 carries when production moved to it)."""
    model = new_model(client, prefix, accept_unsigned=False)
    v1, _ = tiny_version(client, model)
    v2, _ = tiny_version(client, model)
    assert edgeq(server, "promote", model, v1).exit_code == 0
    assert edgeq(server, "promote", model, v2).exit_code == 0
    return model, v1, v2


def _alias(client: MlflowClient, model: str, alias: str = PROD) -> str:
    return str(client.get_registered_model(model).aliases[alias])


def test_reports_from_before_the_move_and_other_windows_do_not_count(server, client, tmp_path):
    model, v1, v2 = _production_model(server, client, "edgeq-judge-old")
    fleet = Fleet(server, client, model, tmp_path)
    for device in ("pi-old-a", "pi-old-b", "pi-old-c"):  # rejections of v2 a year ago, in an earlier window
        fleet.report(device, v2, verdict=contract.STATUS_REJECTED, reason="camera changed", since="",
                     at_ms=_now_ms() - YEAR_MS)
    for device in ("pi-1", "pi-2", "pi-3", "pi-4", "pi-5"):
        fleet.report(device, v2)

    result = edgeq(server, "guard", model, "--dry-run")  # before: 3 of 8 against (37 %), would roll back

    assert result.exit_code == 0, result.output
    assert f"v{v2} stays: 0 of 5 against (0% ≤ 25%)" in result.output
    assert "(3 report(s) outside the window or without a vote" in result.output
    explained = edgeq(server, "guard", model, "--dry-run", "--explain").output
    assert any(line.split()[:1] == ["pi-old-a"] and "excluded" in line and "made before production moved" in line
               for line in explained.splitlines()), explained
    assert _alias(client, model) == v2


def test_a_throttled_device_is_no_vote_on_latency(server, client, tmp_path):
    model, v1, v2 = _production_model(server, client, "edgeq-judge-throttled")
    fleet = Fleet(server, client, model, tmp_path)
    fleet.report("pi-j1", v2)
    fleet.report("pi-j2", v2)
    fleet.report("pi-hot", v2, verdict=contract.STATUS_REJECTED, reason=LATENCY_REFUSAL, throttled="yes", p99=9.1)
    fleet.report("pi-warm", v2, throttled="yes", p99=50.0)

    result = edgeq(server, "guard", model, "--max-p99-ms", "10")  # before: 2 of 4 against on latency alone

    assert result.exit_code == 0, result.output
    assert f"v{v2} stays: 0 of 3 against" in result.output
    assert "accepts  pi-warm" in result.output and "throttled: latency not judged" in result.output
    assert _alias(client, model) == v2
    # Throttling excuses latency, never a crash or a wrong answer.
    window = judge.Window(PROD, "7", "", "")
    crash = DeviceReport("pi-x", {}, {contract.D_STATUS: contract.STATUS_REJECTED, contract.D_ALIAS: PROD,
                                      contract.D_THROTTLED: "yes", contract.D_REASON: "health gate: the candidate crashed"})
    assert judge.vote(crash, window, judge.Limits(), 0.95).vote == judge.AGAINST


def test_slowdown_is_the_median_of_per_device_ratios(server, client, tmp_path):
    model, v1, v2 = _production_model(server, client, "edgeq-judge-slow")
    fleet = Fleet(server, client, model, tmp_path)
    for device in ("pi-j1", "pi-j2", "pi-j3"):
        fleet.report(device, v1, since="", at_ms=_now_ms() - 60_000, p50=1.0)
    fleet.report("pi-j1", v2, p50=3.0)  # one device slower: its own trouble, not the version's
    fleet.report("pi-j2", v2, p50=1.05)
    fleet.report("pi-j3", v2, p50=0.95)

    one = edgeq(server, "guard", model, "--max-slowdown", "2", "--dry-run")  # before: 1 of 3 against (33 %)
    assert one.exit_code == 0, one.output
    assert "median p50 ratio 1.05× over 3 paired devices ≤ 2×" in one.output

    fleet.report("pi-j2", v2, p50=2.5)  # now most devices are slower
    most = edgeq(server, "guard", model, "--max-slowdown", "2", "--dry-run", "--consecutive", "1")
    assert most.exit_code == contract.ExitCode.REJECTED, most.output
    assert "median p50 ratio 2.50× over 3 paired devices > 2×" in most.output


def test_a_breach_must_persist_and_a_rollback_is_followed_by_a_cooldown(server, client, tmp_path):
    model, v1, v2 = _production_model(server, client, "edgeq-judge-persist")
    fleet = Fleet(server, client, model, tmp_path)
    fleet.report("pi-j1", v2)
    fleet.report("pi-j2", v2)
    fleet.report("pi-j3", v2, verdict=contract.STATUS_REJECTED, reason="health gate: the candidate crashed")

    first = edgeq(server, "guard", model)  # before: rolled back at once on one report
    assert first.exit_code == contract.ExitCode.HELD, first.output
    assert "hold: breach 1 of 2 consecutive" in first.output and _alias(client, model) == v2
    state = json.loads(client.get_registered_model(model).tags[contract.guard_state_tag(PROD)])
    assert (state["version"], state["breaches"]) == (v2, 1)

    second = edgeq(server, "guard", model)
    assert second.exit_code == contract.ExitCode.REJECTED, second.output
    assert f"production moved from v{v2} back to v{v1}" in second.output and _alias(client, model) == v1
    # "Why did it roll back?" answered on v2's run in MLflow: the table --explain prints.
    run_id = client.get_model_version(model, v2).run_id
    table = Path(client.download_artifacts(run_id, "guard/latest.txt", str(tmp_path))).read_text()
    assert f"edgeq guard: production moved from v{v2} back to v{v1}" in table
    row = next(line for line in table.splitlines() if line.startswith("pi-j3 "))
    assert row.split()[2:4] == ["production", "against"] and "rejected it: health gate: the candidate crashed" in row
    assert [a.path for a in client.list_artifacts(run_id, "guard") if a.path.startswith("guard/rollback-")]

    cooling = edgeq(server, "guard", model)
    assert cooling.exit_code == contract.ExitCode.HELD and "judges production again after" in cooling.output


def test_mixed_evidence_below_the_margin_holds():
    limits = judge.Limits(max_rejected_fraction=0.2, margin=0.1)
    window = judge.Window(PROD, "7", "", "")
    votes = [judge.Vote(f"pi-{i}", judge.AGAINST if i == 0 else judge.FOR, "") for i in range(4)]
    assert judge.decide(PROD, "7", None, limits, window, votes).outcome == judge.HOLD  # 25 % in (20 %, 30 %]
    votes[1] = judge.Vote("pi-1", judge.AGAINST, "")
    assert judge.decide(PROD, "7", None, limits, window, votes).outcome == judge.ROLL_BACK  # 50 %
    assert judge.decide(PROD, "7", None, limits, window, votes[:2]).outcome == judge.HOLD  # too few devices


def test_a_move_that_races_the_guard_is_not_overwritten(server, client, tmp_path, monkeypatch):
    model, v1, v2 = _production_model(server, client, "edgeq-judge-race")
    v3, _ = tiny_version(client, model)
    fleet = Fleet(server, client, model, tmp_path)
    for device in ("pi-j1", "pi-j2", "pi-j3"):
        fleet.report(device, v2, verdict=contract.STATUS_REJECTED, reason="health gate: the candidate crashed")
    real = promotion.model_version

    def a_person_promotes_meanwhile(*args, **kwargs):  # lands after the guard judged v2, before it writes
        monkeypatch.setattr(promotion, "model_version", real)
        assert edgeq(server, "promote", model, v3, "--reason", "hotfix").exit_code == 0
        return real(*args, **kwargs)

    monkeypatch.setattr(promotion, "model_version", a_person_promotes_meanwhile)
    result = edgeq(server, "guard", model)

    assert result.exit_code == contract.ExitCode.RACED, result.output
    assert f"moved to v{v3} meanwhile (expected v{v2})" in result.output
    assert _alias(client, model) == v3, "the person's move stands"
    events = json.loads(edgeq(server, "history", model, "--json").stdout)
    assert (events[0]["kind"], events[0]["from_version"], events[0]["to_version"]) == ("promote", v2, v3)
    assert all(e["kind"] != "rollback" for e in events)


def test_the_whole_window_is_counted_not_a_capped_page(server, client, monkeypatch):
    model = new_model(client, "edgeq-judge-scale")  # unsigned reports counted: the cheapest way to many devices
    v1, _ = tiny_version(client, model)
    v2, _ = tiny_version(client, model)
    assert edgeq(server, "promote", model, v1).exit_code == 0
    assert edgeq(server, "promote", model, v2).exit_code == 0
    experiment = client.get_registered_model(model).tags[contract.TAG_FLEET_EXPERIMENT_ID]
    reported_at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 1))

    def device(i: int, status: str) -> None:
        name = f"pi-{status[:3]}-{i:03d}"
        tags = {contract.TAG_ROLE: contract.ROLE_DEVICE, contract.TAG_DEVICE_ID: name, contract.TAG_MODEL: model,
                contract.version_key(v2, contract.D_STATUS): status, contract.version_key(v2, contract.D_ALIAS): PROD,
                contract.version_key(v2, contract.D_REPORTED_AT): reported_at,
                contract.version_key(v2, contract.D_REASON): "" if status == contract.STATUS_HEALTHY else "crashed"}
        run_id = client.create_run(experiment).info.run_id
        client.log_batch(run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    with ThreadPoolExecutor(4) as pool:  # healthy first: a newest-first page of 200 sees every rejection
        list(pool.map(lambda i: device(i, contract.STATUS_HEALTHY), range(250)))
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda i: device(i, contract.STATUS_REJECTED), range(67)))

    whole = edgeq(server, "guard", model, "--dry-run")  # before: 67 of 200 read (33 %) would roll back
    assert whole.exit_code == 0, whole.output
    assert f"v{v2} stays: 67 of 317 against (21% ≤ 25%)" in whole.output
    assert "… and 230 more accepts" in whole.output

    monkeypatch.setattr(judge, "MAX_DEVICES", 100)
    capped = edgeq(server, "guard", model, "--dry-run")
    assert capped.exit_code == contract.ExitCode.HELD, capped.output
    assert "a capped page is not the fleet" in capped.output


def test_a_move_right_after_the_guards_is_reported_and_recorded(server, client, tmp_path, monkeypatch):
    from registry_tools.rest_client import RestClient

    model, v1, v2 = _production_model(server, client, "edgeq-judge-race-after")
    v3, _ = tiny_version(client, model)
    fleet = Fleet(server, client, model, tmp_path)
    for device in ("pi-j1", "pi-j2", "pi-j3"):
        fleet.report(device, v2, verdict=contract.STATUS_REJECTED, reason="health gate: the candidate crashed")
    real = RestClient.set_registered_model_alias

    def someone_lands_right_after(self, name, alias, version):  # the same instant: MLflow has no compare-and-set
        real(self, name, alias, version)
        monkeypatch.setattr(RestClient, "set_registered_model_alias", real)
        MlflowClient(server.uri, registry_uri=server.uri).set_registered_model_alias(name, alias, v3)

    monkeypatch.setattr(RestClient, "set_registered_model_alias", someone_lands_right_after)
    result = edgeq(server, "guard", model)

    assert result.exit_code == contract.ExitCode.RACED, result.output
    assert f"was moved to v{v3} right after edgeq moved it to v{v1}" in result.output
    assert _alias(client, model) == v3, "edgeq does not move it again"
    events = json.loads(edgeq(server, "history", model, "--json").stdout)
    assert [(e["kind"], e["from_version"], e["to_version"]) for e in events[:2]] == \
        [("outside edgeq", v1, v3), ("rollback", v2, v1)]
