"""How many devices download a bad version before it is stopped: staged rollout vs. the two-jump flows.

    python -m bench.rollout_exposure [--devices 40]

One throw-away loopback ``mlflow server``; N devices run the real puller (in this process, one after the other: a
round is one 15-minute cron interval of the whole fleet), all on a good v1. Then a bad version (consistent bundle
whose sample disagrees with its registered accuracy: every device's health gate refuses it) is shipped three ways,
each on a fresh model with the same device ids:

- **staged**: ``edgeq rollout start --steps 5,25,100 --min-devices 2``, ``edgeq rollout step`` after every round;
- **canary group**: a fixed group of devices follows ``canary`` (as many as the first stage holds on average),
  ``promote --from canary --require-devices 2`` after every round, the rest follow production;
- **production + guard**: promoted to production, ``edgeq guard --consecutive 1`` after every round.

Counted: devices that downloaded the bad version (and ran it in their sandboxed check) before the alias stopped
pointing at it for them, and the rounds it took.
"""
from __future__ import annotations

import argparse
import tempfile
from dataclasses import dataclass
from pathlib import Path

from click.testing import CliRunner

from edge import contract
from edge.puller import PullConfig, pull
from edge.registry_client import RegistryClient
from edge.rollout_share import takes
from registry_tools.cli import main as edgeq_main
from registry_tools.mlflow_server import MlflowServer
from tests.edge.registry_rest import MlflowRest, disagreeing_bundle, register_fixture

MAX_ROUNDS = 6


@dataclass(frozen=True)
class Exposure:
    flow: str
    devices: int
    downloaded_bad: int
    rounds: int
    stopped: str


def _edgeq(uri: str, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(edgeq_main, ["--tracking-uri", uri, *args], catch_exceptions=False)
    return result.exit_code, result.output


def _model(uri: str, rest: MlflowRest, name: str, root: Path) -> tuple[str, str]:
    fleet = rest.experiment_id(contract.FLEET_EXPERIMENT)
    rest.call("POST", "registered-models/create", json={"name": name, "tags": [
        {"key": contract.TAG_FLEET_EXPERIMENT_ID, "value": fleet}, {"key": contract.TAG_ACCEPT_UNSIGNED, "value": "true"}]})
    good = register_fixture(rest, name, "int8", alias=contract.DEFAULT_ALIAS).version
    bad = register_fixture(rest, name, "int8", alias=None, bundle=disagreeing_bundle("int8", root / f"bad-{name}")).version
    return good, bad


def _flow(uri: str, rest: MlflowRest, root: Path, flow: str, ids: list[str], canary: set[str]) -> Exposure:
    name = f"exposure-{flow.replace(' ', '-').replace('+', '')}"
    good, bad = _model(uri, rest, name, root)
    registry = RegistryClient(uri)
    states = root / name

    def alias_of(device: str) -> str:
        return contract.CANARY_ALIAS if flow == "canary group" and device in canary else contract.DEFAULT_ALIAS

    def round_() -> set[str]:
        got = set()
        for device in ids:
            outcome = pull(PullConfig(name, states / device, device, alias=alias_of(device), runs=3, warmup=1,
                                      interval_s=900), registry)
            if outcome.version == bad and outcome.code in (contract.ExitCode.OK, contract.ExitCode.REJECTED):
                got.add(device)  # it downloaded the bad version and ran it in its sandboxed check (or remembers so)
        return got

    round_()  # every device installs the good version
    if flow == "staged":
        _edgeq(uri, "rollout", "start", name, bad, "--steps", "5,25,100", "--min-devices", "2", "--min-stage-time", "0")
    elif flow == "canary group":
        _edgeq(uri, "promote", name, good, "--alias", contract.CANARY_ALIAS)
        for device in canary:
            pull(PullConfig(name, states / device, device, alias=contract.CANARY_ALIAS, runs=3, warmup=1), registry)
        _edgeq(uri, "promote", name, bad, "--alias", contract.CANARY_ALIAS)
    else:
        _edgeq(uri, "promote", name, bad)
    exposed: set[str] = set()
    stopped = "not stopped"
    for rounds in range(1, MAX_ROUNDS + 1):
        exposed |= round_()
        if flow == "staged":
            code, out = _edgeq(uri, "rollout", "step", name)
            if code == contract.ExitCode.REJECTED:
                stopped = "rolled back at stage 1"
                break
        elif flow == "canary group":
            code, out = _edgeq(uri, "promote", name, "--from", contract.CANARY_ALIAS, "--require-devices", "2")
            if code == contract.ExitCode.REJECTED:
                stopped = "canary refused: production never pointed at it"
                break
        else:
            code, out = _edgeq(uri, "guard", name, "--consecutive", "1")
            if code == contract.ExitCode.REJECTED:
                stopped = "the guard rolled production back"
                break
    return Exposure(flow, len(ids), len(exposed), rounds, stopped)


def run(devices: int = 40) -> list[Exposure]:
    ids = [f"pi-{i:03d}" for i in range(devices)]
    first_stage = max(2, round(devices * 0.05))
    canary = set(ids[:first_stage])  # the first devices an operator would name
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = MlflowServer(root / "mlflow").start()
        try:
            rest = MlflowRest(server.uri)
            return [_flow(server.uri, rest, root, flow, ids, canary)
                    for flow in ("staged", "canary group", "production + guard")]
        finally:
            server.stop()


def table(results: list[Exposure], devices: int) -> str:
    stage = sum(1 for i in range(devices) if takes(f"pi-{i:03d}", "2", 5))
    lines = [f"{devices} devices; a bad version refused by every device's health gate; the first 5 % stage of v2 holds "
             f"{stage} of them", "",
             "| flow | devices that downloaded the bad version | rounds (15-min intervals) | how it stopped |",
             "|---|---|---|---|"]
    lines += [f"| {r.flow} | {r.downloaded_bad} of {r.devices} | {r.rounds} | {r.stopped} |" for r in results]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=40)
    args = parser.parse_args()
    print(table(run(args.devices), args.devices))


if __name__ == "__main__":
    main()
