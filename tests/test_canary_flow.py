"""End to end: a canary cohort decides what goes to production, on what the devices measured.

Several simulated devices (separate edgeq-pull processes and state dirs) against a
real MLflow server: two canary devices report v2 healthy, one rejects it on its own
limits, `edgeq promote --from canary` needs 2 healthy devices (succeeds, naming them)
or 3 (refuses, saying why), `edgeq fleet` shows each device, and the app's hook runs on
change while a failing hook rolls the device back.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from edge import contract
from edge.contract import ExitCode as Exit
from tests.edge.registry_rest import MlflowRest, register_fixture

BIN = Path(sys.executable).parent
MODEL = "edgeq-canary-flow"


def _env(uri: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEQ_", "MLFLOW_"))}
    return {**env, "MLFLOW_TRACKING_URI": uri}


def _pull(uri: str, tmp: Path, device: str, *extra: str) -> subprocess.CompletedProcess:
    args = ["--model", MODEL, "--device-id", device, "--state-dir", str(tmp / device), "--runs", "5", "--warmup", "1", *extra]
    return subprocess.run([str(BIN / "edgeq-pull"), *args], env=_env(uri), capture_output=True, text=True, timeout=180)


def _edgeq(uri: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "edgeq"), *args], env=_env(uri), capture_output=True, text=True, timeout=180)


@pytest.fixture(scope="module")
def flow(server, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("canary")
    rest = MlflowRest(server.uri)
    v1 = register_fixture(rest, MODEL, "fp32", alias=contract.DEFAULT_ALIAS)
    steady = _pull(server.uri, tmp, "pi-prod")  # a production device, on v1
    v2 = register_fixture(rest, MODEL, "int8", alias=None)
    promoted = _edgeq(server.uri, "promote", MODEL, v2.version, "--alias", contract.CANARY_ALIAS)
    hook_log = tmp / "hook.log"
    canary = {
        "pi-a": _pull(server.uri, tmp, "pi-a", "--alias", "canary", "--on-change", f'echo "$EDGEQ_MODEL_VERSION" >> {hook_log}'),
        "pi-b": _pull(server.uri, tmp, "pi-b", "--alias", "canary"),
        "pi-c": _pull(server.uri, tmp, "pi-c", "--alias", "canary", "--max-p99-ms", "0.000001"),
    }
    aliases = lambda: {a["alias"]: a["version"] for a in rest.call(  # noqa: E731
        "GET", "registered-models/get", params={"name": MODEL})["registered_model"]["aliases"]}
    refused = _edgeq(server.uri, "promote", MODEL, "--from", "canary", "--require-devices", "3")
    after_refusal = aliases()
    accepted = _edgeq(server.uri, "promote", MODEL, "--from", "canary", "--require-devices", "2")
    return {"uri": server.uri, "tmp": tmp, "rest": rest, "v1": v1, "v2": v2, "steady": steady,
            "promoted": promoted, "canary": canary, "hook_log": hook_log, "refused": refused,
            "after_refusal": after_refusal, "accepted": accepted, "after_acceptance": aliases()}


def test_canary_devices_report_their_verdicts(flow):
    assert flow["steady"].returncode == Exit.OK, flow["steady"].stderr
    assert flow["promoted"].returncode == Exit.OK, flow["promoted"].stderr
    codes = {d: p.returncode for d, p in flow["canary"].items()}
    assert codes == {"pi-a": Exit.OK, "pi-b": Exit.OK, "pi-c": Exit.REJECTED}, {d: p.stderr for d, p in flow["canary"].items()}
    assert flow["hook_log"].read_text().split() == [flow["v2"].version]
    tags = flow["rest"].run_tags(flow["v2"].run_id)
    assert tags[contract.device_key("pi-c", contract.D_STATUS)] == contract.STATUS_REJECTED
    assert "--max-p99-ms" in tags[contract.device_key("pi-c", contract.D_REASON)]


def test_promotion_needing_three_healthy_devices_is_refused_and_says_why(flow):
    proc = flow["refused"]
    assert proc.returncode == Exit.REJECTED, proc.stdout + proc.stderr
    out = proc.stdout + proc.stderr
    assert "pi-c" in out and "rejected" in out
    assert flow["after_refusal"][contract.DEFAULT_ALIAS] == flow["v1"].version


def test_promotion_needing_two_healthy_devices_moves_production_and_names_them(flow):
    proc = flow["accepted"]
    assert proc.returncode == Exit.OK, proc.stdout + proc.stderr
    assert "pi-a" in proc.stdout and "pi-b" in proc.stdout
    assert flow["after_acceptance"][contract.DEFAULT_ALIAS] == flow["v2"].version
    history = _edgeq(flow["uri"], "history", MODEL, "--json")
    assert history.returncode == 0 and "pi-a" in history.stdout


def test_the_fleet_view_shows_each_device(flow):
    proc = _edgeq(flow["uri"], "fleet", MODEL, "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["device"]: r for r in json.loads(proc.stdout)}
    assert rows["pi-a"]["status"] == "ok" and rows["pi-a"]["running_version"] == flow["v2"].version
    assert rows["pi-c"]["running_version"] is None or rows["pi-c"]["running_version"] != flow["v2"].version
    assert any(f.startswith("rejected v" + flow["v2"].version) for f in rows["pi-c"]["flags"]), rows["pi-c"]
    assert any(f.startswith("behind") for f in rows["pi-prod"]["flags"]), rows["pi-prod"]  # production moved on, pi-prod has not pulled yet
    assert rows["pi-a"]["latency_p50_ms"] > 0 and rows["pi-a"]["sample_accuracy"] >= 0.9
    table = _edgeq(flow["uri"], "fleet", MODEL)
    assert "pi-prod" in table.stdout and "behind" in table.stdout


def test_a_failing_hook_on_a_canary_rolls_back(flow):
    tmp = flow["tmp"]
    first = _pull(flow["uri"], tmp, "pi-hook", "--model-version", flow["v1"].version)
    assert first.returncode == Exit.OK, first.stderr
    proc = _pull(flow["uri"], tmp, "pi-hook", "--alias", "canary", "--on-change", "exit 7")
    assert proc.returncode == Exit.REJECTED and "exit 7" in proc.stderr and f"rolled back to v{flow['v1'].version}" in proc.stderr
    assert (tmp / "pi-hook" / "current").resolve().name.startswith(f"v{flow['v1'].version}-")
