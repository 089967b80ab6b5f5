"""The ``edgeq`` CLI against a real MLflow server: versions, compare, the promotion gate, --best, rollback, exit codes."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge import contract
from edge.contract import ExitCode
from edge.puller import Exit, PullConfig, pull
from edge.registry_client import RegistryClient
from registry_tools.cli import main
from tests.conftest import MODEL_NAME, copy_version, version_in_own_run
from tests.registry_tools.devices import edgeq, enroll, new_model, report, tiny_version
from tests.servers import free_port


def _version_with_drop(client, pipeline, bundles, model: str, drop: float) -> str:
    """A tflite version in a run of its own whose metrics say it loses ``drop`` points (badly calibrated)."""
    return version_in_own_run(client, pipeline, model, "int8", bundles["int8"],
                              {contract.M_DROP: drop, contract.M_ACCURACY: 0.5})


def _alias(client, model: str) -> str | None:
    version = client.get_registered_model(model).aliases.get(contract.DEFAULT_ALIAS)
    return None if version is None else str(version)


def test_versions_table_lists_every_variant(pipeline):
    result = edgeq(pipeline, "versions", MODEL_NAME, "--wide")
    assert result.exit_code == 0, result.output
    header, rule, *rows = result.output.splitlines()
    assert header.split()[:4] == ["version", "variant", "accuracy", "%"]
    for variant in (*contract.VARIANTS, contract.BASELINE):
        assert any(f"  {variant} " in row for row in rows), variant


def test_versions_json_carries_metrics_aliases_and_device_figures(pipeline, client, fresh_model, tmp_path):
    version = copy_version(client, pipeline, fresh_model, "int8")
    client.set_registered_model_alias(fresh_model, contract.DEFAULT_ALIAS, version)
    enroll(pipeline, tmp_path, "pi-json", fresh_model)
    assert pull(PullConfig(fresh_model, tmp_path, "pi-json", runs=5, warmup=1), RegistryClient(pipeline.uri)).code == Exit.OK

    rows = json.loads(edgeq(pipeline, "versions", fresh_model, "--json", "--devices").stdout)  # per device: --devices

    assert [r["version"] for r in rows] == [version]
    row = rows[0]
    assert row["variant"] == "int8" and row["aliases"] == [contract.DEFAULT_ALIAS]
    assert 0 < row["test_accuracy"] <= 1 and row["size_bytes"] > 0 and row["host_latency_p50_ms"] > 0
    assert row["device_latency_p50_ms"]["pi-json"] > 0


def test_compare_writes_a_png_and_names_the_pareto_front(pipeline, tmp_path):
    out = tmp_path / "cmp.png"
    result = edgeq(pipeline, "compare", MODEL_NAME, "-o", str(out))
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Pareto-optimal on host: v" in result.output


def test_promote_sets_alias_stage_and_who_when(pipeline, client, fresh_model):
    version = copy_version(client, pipeline, fresh_model, "int8")
    result = edgeq(pipeline, "promote", fresh_model, version)
    assert result.exit_code == 0, result.output
    assert f"production → v{version}" in result.output and "was unset" in result.output
    mv = client.get_model_version(fresh_model, version)
    assert _alias(client, fresh_model) == version
    assert mv.current_stage == contract.STAGE_PRODUCTION
    assert mv.tags[contract.TAG_PROMOTED_BY] and mv.tags[contract.TAG_PROMOTED_AT]


def test_gate_refuses_a_large_accuracy_drop_unless_forced(pipeline, client, bundles, fresh_model):
    bad = _version_with_drop(client, pipeline, bundles, fresh_model, 5.7)

    refused = edgeq(pipeline, "promote", fresh_model, bad)
    assert refused.exit_code == ExitCode.REJECTED
    assert "loses 5.70 accuracy points (limit 1.00)" in refused.output
    assert _alias(client, fresh_model) is None, "nothing changes when the gate refuses"

    assert edgeq(pipeline, "promote", fresh_model, bad, "--max-accuracy-drop", "6").exit_code == 0
    other = _version_with_drop(client, pipeline, bundles, fresh_model, 9.0)
    assert edgeq(pipeline, "promote", fresh_model, other, "--force").exit_code == 0
    assert _alias(client, fresh_model) == other


def test_gate_refuses_a_model_the_devices_runtime_cannot_load(pipeline, client, fresh_model):
    newer = copy_version(client, pipeline, fresh_model, "int8", **{contract.TAG_MIN_RUNTIME: "2.17.0"})
    refused = edgeq(pipeline, "promote", fresh_model, newer, "--tflite-version", "2.14.0")
    assert refused.exit_code == ExitCode.REJECTED and "needs TFLite runtime 2.17.0" in refused.output
    assert edgeq(pipeline, "promote", fresh_model, newer, "--tflite-version", "2.18.0").exit_code == 0


def test_old_option_names_still_work_for_one_release_with_a_warning(pipeline, client, fresh_model):
    newer = copy_version(client, pipeline, fresh_model, "int8", **{contract.TAG_MIN_RUNTIME: "2.17.0"})
    refused = CliRunner().invoke(main, ["--tracking-uri", pipeline.uri, "promote", fresh_model, newer, "--runtime-version", "2.14.0"])
    assert refused.exit_code == ExitCode.REJECTED and "needs TFLite runtime 2.17.0" in refused.output
    assert "--runtime-version is deprecated" in refused.stderr and "use --tflite-version" in refused.stderr
    old_device = CliRunner().invoke(main, ["--tracking-uri", pipeline.uri, "promote", fresh_model, "--best", "--device", "pi-old"])
    assert old_device.exit_code == ExitCode.BAD_CONFIG and "no figures from device 'pi-old'" in old_device.output
    assert "--device is deprecated" in old_device.stderr and "use --device-id" in old_device.stderr
    clash = edgeq(pipeline, "promote", fresh_model, newer, "--tflite-version", "2.18", "--runtime-version", "2.14")
    assert clash.exit_code == ExitCode.BAD_CONFIG and "disagree" in clash.output
    assert _alias(client, fresh_model) is None


def test_the_keras_baseline_cannot_be_promoted_to_devices(pipeline):
    result = edgeq(pipeline, "promote", MODEL_NAME, pipeline.versions[contract.BASELINE], "--force", "--alias", "try")
    assert result.exit_code == ExitCode.REJECTED and "not a .tflite" in result.output


def test_best_refuses_without_device_figures(pipeline, client, bundles, fresh_model):
    _version_with_drop(client, pipeline, bundles, fresh_model, 0.2)  # a run no device has reported to
    result = edgeq(pipeline, "promote", fresh_model, "--best", "--device-id", "pi-nobody")
    assert result.exit_code == ExitCode.BAD_CONFIG and "no device has reported yet" in result.output
    assert _alias(client, fresh_model) is None


def test_best_picks_the_fastest_within_budget_on_that_device(pipeline, client, bundles, fresh_model):
    # The device figures are logged here with known latencies, so the expected choice does not
    # come from the tool under test. variant: (accuracy drop in points, p50 on pi-best, p50 on pi-other)
    plan = {
        "fp32": (0.0, 3.0, 0.1),     # the fastest on another device only
        "int8": (0.4, 1.2, 5.0),     # the fastest on pi-best within the 1.0-point budget
        "dynamic": (2.5, 0.6, 5.0),  # faster on pi-best, but loses too much
    }
    versions = {
        variant: version_in_own_run(client, pipeline, fresh_model, variant, bundles[variant], {
            contract.M_DROP: drop, contract.M_ACCURACY: 0.9,
            contract.device_key("pi-best", contract.D_P50): best_ms,
            contract.device_key("pi-other", contract.D_P50): other_ms})
        for variant, (drop, best_ms, other_ms) in plan.items()
    }

    # The figures above are in the legacy layout, unsigned: the operator says they count.
    result = edgeq(pipeline, "promote", fresh_model, "--best", "--device-id", "pi-best", "--accept-unsigned")

    assert result.exit_code == 0, result.output
    assert f"v{versions['int8']} (int8) is the fastest on pi-best at 1.20 ms" in result.output, result.output
    assert _alias(client, fresh_model) == versions["int8"]
    wider = edgeq(pipeline, "promote", fresh_model, "--best", "--device-id", "pi-best", "--max-accuracy-drop", "3",
                  "--accept-unsigned")
    assert wider.exit_code == 0 and f"v{versions['dynamic']} (dynamic) is the fastest" in wider.output, wider.output
    assert _alias(client, fresh_model) == versions["dynamic"]
    unknown = edgeq(pipeline, "promote", fresh_model, "--best", "--device-id", "pi-elsewhere", "--accept-unsigned")
    assert unknown.exit_code == ExitCode.BAD_CONFIG and "devices with figures: pi-best, pi-other" in unknown.output
    strict = edgeq(pipeline, "promote", fresh_model, "--best", "--device-id", "pi-best", "--max-accuracy-drop", "-100",
                    "--accept-unsigned")
    assert strict.exit_code == ExitCode.REJECTED and "within -100.00 accuracy points" in strict.output


def test_rollback_after_two_promotions(pipeline, client, fresh_model):
    first = copy_version(client, pipeline, fresh_model, "fp16")
    second = copy_version(client, pipeline, fresh_model, "int8")
    assert edgeq(pipeline, "promote", fresh_model, first).exit_code == 0
    assert edgeq(pipeline, "promote", fresh_model, second).exit_code == 0

    result = edgeq(pipeline, "rollback", fresh_model)

    assert result.exit_code == 0, result.output
    assert f"rolled back from v{second} to v{first}" in result.output
    assert _alias(client, fresh_model) == first
    again = edgeq(pipeline, "rollback", fresh_model)
    assert again.exit_code == ExitCode.BAD_CONFIG and "no earlier version" in again.output
    assert _alias(client, fresh_model) == first


@pytest.mark.parametrize(
    "args, message",
    [
        (["versions", "no-such-model"], "unknown model 'no-such-model'"),
        (["promote", "no-such-model", "1"], "unknown model 'no-such-model'"),
        (["promote", MODEL_NAME, "999"], "has no version '999'"),
        (["rollback", MODEL_NAME, "--alias", "never-set"], "no alias 'never-set'"),
        (["promote", MODEL_NAME], "give either VERSION or --best"),
    ],
)
def test_bad_input_is_one_line_and_exit_code_2(pipeline, args, message):
    result = edgeq(pipeline, *args)
    assert result.exit_code == ExitCode.BAD_CONFIG
    assert message in result.output
    assert len([l for l in result.output.splitlines() if l.startswith("Error")]) == 1


EDGEQ = str(Path(sys.executable).with_name("edgeq"))


def test_server_down_is_one_line_within_seconds_and_exit_code_3():
    start = time.monotonic()
    proc = subprocess.run(
        [EDGEQ, "--tracking-uri", f"http://127.0.0.1:{free_port()}", "promote", "m", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == ExitCode.UNREACHABLE
    assert proc.stderr.strip().count("\n") == 0 and "not reachable" in proc.stderr
    assert time.monotonic() - start < 30


@pytest.mark.parametrize("command", ["versions", "compare", "promote", "rollback", "history", "fleet"])
def test_command_help_needs_no_server(command):
    """The server is checked when a command runs, not when it parses its options."""
    down = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(main, ["--tracking-uri", down, command, "--help"])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"Usage: main {command} [OPTIONS] MODEL") and "not reachable" not in result.output
    assert "--model NAME" in result.output
    ran = CliRunner().invoke(main, ["--tracking-uri", down, command, "some-model"])
    assert ran.exit_code == ExitCode.UNREACHABLE and "not reachable" in ran.output


def test_the_installed_command_answers_help_without_a_server():
    proc = subprocess.run([EDGEQ, "--tracking-uri", f"http://127.0.0.1:{free_port()}", "promote", "--help"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.startswith("Usage: edgeq promote"), proc.stderr


def test_version_prints_the_program_version():
    from importlib.metadata import version

    proc = subprocess.run([EDGEQ, "--version"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == f"edgeq {version('edgeq')}"


_BLOCK_REGISTRY_EXTRA = """
import sys

class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("mlflow", "matplotlib"):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, _NotInstalled())
"""


def test_edge_only_install_names_the_extra_to_install(tmp_path):
    """As after `pip install edgeq[edge]`: mlflow and matplotlib cannot be imported (a sitecustomize blocks them)."""
    (tmp_path / "sitecustomize.py").write_text(_BLOCK_REGISTRY_EXTRA)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PYTHONPATH": str(tmp_path)}
    control = subprocess.run([sys.executable, "-c", "import mlflow"], env=env, capture_output=True, text=True, timeout=120)
    assert control.returncode != 0 and "No module named 'mlflow'" in control.stderr, "the block must be in place"

    proc = subprocess.run([EDGEQ, "versions", "some-model"], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)

    assert proc.returncode == ExitCode.BAD_CONFIG
    assert proc.stdout == "" and proc.stderr.count("\n") == 1, proc.stderr
    assert 'pip install "edgeq[registry]"' in proc.stderr and "Traceback" not in proc.stderr


def test_help_lists_the_exit_codes():
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    codes = result.output.split("\nExit codes:\n")[1]
    for code, meaning in contract.EXIT_MEANINGS.items():
        assert f"  {int(code)}  {meaning.split()[0]}" in codes, code


def test_model_and_version_as_options_as_edgeq_pull_spells_them(server, client):
    model = new_model(client)
    v1, _ = tiny_version(client, model)
    v2, _ = tiny_version(client, model)
    assert edgeq(server, "promote", "--model", model, "--model-version", v1).exit_code == 0
    assert _alias(client, model) == v1
    assert edgeq(server, "promote", model, v2).exit_code == 0 and _alias(client, model) == v2
    assert edgeq(server, "rollback", "--model", model).exit_code == 0 and _alias(client, model) == v1
    listed = edgeq(server, "versions", "--model", model, "--json")
    assert listed.exit_code == 0 and sorted(r["version"] for r in json.loads(listed.stdout)) == sorted([v1, v2])
    assert edgeq(server, "history", "--model", model).output == edgeq(server, "history", model).output

    from_env = CliRunner().invoke(main, ["--tracking-uri", server.uri, "promote"],
                                  env={"EDGEQ_MODEL": model, "EDGEQ_MODEL_VERSION": v2})
    assert from_env.exit_code == 0, from_env.output
    assert _alias(client, model) == v2
    argument_wins = CliRunner().invoke(main, ["--tracking-uri", server.uri, "promote", model, v1],
                                       env={"EDGEQ_MODEL": "elsewhere", "EDGEQ_MODEL_VERSION": v2})
    assert argument_wins.exit_code == 0 and _alias(client, model) == v1


@pytest.mark.parametrize(
    "args, message",
    [
        (["promote", "m", "1", "--model", "m"], "the model is given twice (MODEL m and --model m): give one of them"),
        (["promote", "m", "1", "--model-version", "2"], "the version is given twice (VERSION 1 and --model-version 2): give one of them"),
        (["history"], "no model: give MODEL or --model NAME (or set EDGEQ_MODEL)"),
    ],
)
def test_a_model_given_twice_or_not_at_all_is_one_line_and_exit_2(args, message):
    down = f"http://127.0.0.1:{free_port()}"  # found before any server is asked
    result = CliRunner().invoke(main, ["--tracking-uri", down, *args], env={"EDGEQ_MODEL": None, "EDGEQ_MODEL_VERSION": None})
    assert result.exit_code == ExitCode.BAD_CONFIG
    assert result.output.splitlines() == [f"Error: {message}"]


def test_a_plain_p99_limit_means_every_device_as_in_edgeq_pull(server, client):
    model = new_model(client)
    version, run_id = tiny_version(client, model, alias=contract.CANARY_ALIAS)
    report(client, run_id, "pi-a", version, p99=1.9)
    report(client, run_id, "pi-b", version, p99=2.4)
    promote = ["promote", model, "--from", "canary", "--require-devices", "2", "--max-p99-ms", "2"]
    refused = edgeq(server, *promote)
    assert refused.exit_code == ExitCode.REJECTED and "pi-b  p99 2.40 ms > limit 2 ms (all)" in refused.output, refused.output
    own = edgeq(server, *promote, "--max-p99-ms", "pi-b=3")  # a device's own limit wins, as on the device
    assert own.exit_code == 0, own.output
    assert _alias(client, model) == version
