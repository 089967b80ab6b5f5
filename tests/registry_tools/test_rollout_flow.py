"""A staged rollout end to end with 24 enrolled devices running the real puller on a real server: a good version walks
10 → 50 → 100 %, a bad one stops at its first stage, and only that stage's devices ever downloaded it."""
from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from edge import contract
from edge.puller import Exit, PullConfig, pull
from edge.registry_client import RegistryClient
from edge.rollout_share import takes
from edge.state import DeviceState
from tests.edge.registry_rest import MlflowRest, disagreeing_bundle, register_fixture
from tests.registry_tools.devices import edgeq, enroll, new_model

FLEET = [f"pi-{i:02d}" for i in range(24)]
PROD = contract.DEFAULT_ALIAS


def test_a_good_version_walks_the_stages_and_a_bad_one_stops_at_the_first(server, client, tmp_path):
    model = new_model(client, "edgeq-rollout-flow", accept_unsigned=False)
    rest = MlflowRest(server.uri)
    v1 = register_fixture(rest, model, "int8", alias=PROD).version
    v2 = register_fixture(rest, model, "int8", alias=None).version
    v3 = register_fixture(rest, model, "int8", alias=None, bundle=disagreeing_bundle("int8", tmp_path / "bad")).version
    for device in FLEET:
        enroll(server, tmp_path / device, device, model)
    downloaded: dict[str, set[str]] = {d: set() for d in FLEET}

    def run_fleet() -> dict[str, tuple[Exit, str | None]]:
        def one(device: str) -> tuple[Exit, str | None]:
            outcome = pull(PullConfig(model, tmp_path / device, device, runs=3, warmup=1, interval_s=60),
                           RegistryClient(server.uri))
            if outcome.bytes_downloaded or outcome.code == Exit.REJECTED:  # a refusal downloaded it (or did before)
                downloaded[device].add(outcome.version)
            current = DeviceState(tmp_path / device).current()
            return outcome.code, current.version if current else None

        with ThreadPoolExecutor(4) as pool:  # devices are independent: each its own state dir and client
            return dict(zip(FLEET, pool.map(one, FLEET)))

    def fleet_view() -> dict[str, dict]:
        return {r["device"]: r for r in json.loads(edgeq(server, "fleet", model, "--json").stdout)}

    assert {v for _, v in run_fleet().values()} == {v1}
    for got in downloaded.values():
        got.clear()
    started = edgeq(server, "rollout", "start", model, v2, "--steps", "10,50,100", "--min-stage-time", "0",
                    "--min-devices", "2")
    assert started.exit_code == 0, started.output
    for share in (10, 50):
        stage = {d for d in FLEET if takes(d, v2, share)}
        seen = run_fleet()
        assert {d for d, (_, v) in seen.items() if v == v2} == stage, share
        assert all(code == Exit.OK for code, _ in seen.values())
        rows = fleet_view()
        assert all(rows[d]["status"] == "ok" for d in stage), [rows[d]["flags"] for d in stage]
        assert all(rows[d]["status"] == f"ok (outside the {share} % stage of v{v2})" and not rows[d]["flags"]
                   for d in set(FLEET) - stage), "outside the stage is not behind"
        stepped = edgeq(server, "rollout", "step", model)
        assert stepped.exit_code == 0, stepped.output
        assert ("rollout complete" if share == 50 else "stage 2 of 3 (50 %) begins") in stepped.output
    assert {v for _, v in run_fleet().values()} == {v2}, "complete: every device takes it"
    assert all(downloaded[d] == {v2} for d in FLEET), "each device downloaded the new version once, in its stage"

    bad = edgeq(server, "rollout", "start", model, v3, "--steps", "10,50,100", "--min-stage-time", "0",
                "--min-devices", "2")
    assert bad.exit_code == 0, bad.output
    first = {d for d in FLEET if takes(d, v3, 10)}
    seen = run_fleet()
    assert {d for d, (code, _) in seen.items() if code == Exit.REJECTED} == first
    assert {v for _, v in seen.values()} == {v2}, "the health gate kept v2 serving everywhere"
    held = edgeq(server, "rollout", "status", model)
    assert f"{len(first)} against" not in held.output and "against" in held.output, held.output
    rows = fleet_view()
    assert all(rows[d]["flags"][0].startswith(f"rejected v{v3}") for d in first), [rows[d]["flags"] for d in first]
    assert all(rows[d]["status"].startswith("ok (outside the 10 % stage") for d in set(FLEET) - first)

    stopped = edgeq(server, "rollout", "step", model)
    assert stopped.exit_code == contract.ExitCode.REJECTED, stopped.output
    assert f"production goes back to v{v2} for every device" in stopped.output
    assert str(client.get_registered_model(model).aliases[PROD]) == v2
    assert {d for d in FLEET if v3 in downloaded[d]} == first, "only the first stage ever downloaded the bad version"
    assert {v for _, v in run_fleet().values()} == {v2}
    history = json.loads(edgeq(server, "history", model, "--json").stdout)
    kinds = [(e["kind"], e["from_version"], e["to_version"]) for e in history][:5]
    assert kinds[0] == ("rollback", v3, v2) and ("promote", v2, v3) in kinds, kinds
