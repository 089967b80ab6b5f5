"""The ``edgeq`` CLI against a real MLflow server: versions, compare, the promotion gate, --best, rollback."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from edge import contract
from edge.puller import Exit, PullConfig, pull
from edge.registry_client import RegistryClient
from registry_tools.cli import main
from tests.conftest import MODEL_NAME, copy_version, version_in_own_run
from tests.servers import free_port


def edgeq(pipeline, *args: str):
    return CliRunner().invoke(main, ["--tracking-uri", pipeline.uri, *args], catch_exceptions=False)


def _version_with_drop(client, pipeline, bundles, model: str, drop: float) -> str:
    """A tflite version in a run of its own whose metrics say it loses ``drop`` points (badly calibrated)."""
    return version_in_own_run(client, pipeline, model, "int8", bundles["int8"],
                              {contract.M_DROP: drop, contract.M_ACCURACY: 0.5})


def _alias(client, model: str) -> str | None:
    version = client.get_registered_model(model).aliases.get(contract.DEFAULT_ALIAS)
    return None if version is None else str(version)


def test_versions_table_lists_every_variant(pipeline):
    result = edgeq(pipeline, "versions", MODEL_NAME)
    assert result.exit_code == 0, result.output
    header, rule, *rows = result.output.splitlines()
    assert header.split()[:4] == ["version", "variant", "accuracy", "%"]
    for variant in (*contract.VARIANTS, contract.BASELINE):
        assert any(f"  {variant} " in row for row in rows), variant


def test_versions_json_carries_metrics_aliases_and_device_figures(pipeline, client, fresh_model, tmp_path):
    version = copy_version(client, pipeline, fresh_model, "int8")
    client.set_registered_model_alias(fresh_model, contract.DEFAULT_ALIAS, version)
    assert pull(PullConfig(fresh_model, tmp_path, "pi-json", runs=5, warmup=1), RegistryClient(pipeline.uri)).code == Exit.OK

    rows = json.loads(edgeq(pipeline, "versions", fresh_model, "--json").output)

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
    assert refused.exit_code == 1
    assert "loses 5.70 accuracy points (limit 1.00)" in refused.output
    assert _alias(client, fresh_model) is None, "nothing changes when the gate refuses"

    assert edgeq(pipeline, "promote", fresh_model, bad, "--max-accuracy-drop", "6").exit_code == 0
    other = _version_with_drop(client, pipeline, bundles, fresh_model, 9.0)
    assert edgeq(pipeline, "promote", fresh_model, other, "--force").exit_code == 0
    assert _alias(client, fresh_model) == other


def test_gate_refuses_a_model_the_devices_runtime_cannot_load(pipeline, client, fresh_model):
    newer = copy_version(client, pipeline, fresh_model, "int8", **{contract.TAG_MIN_RUNTIME: "2.17.0"})
    refused = edgeq(pipeline, "promote", fresh_model, newer, "--runtime-version", "2.14.0")
    assert refused.exit_code == 1 and "needs TFLite runtime 2.17.0" in refused.output
    assert edgeq(pipeline, "promote", fresh_model, newer, "--runtime-version", "2.18.0").exit_code == 0


def test_the_keras_baseline_cannot_be_promoted_to_devices(pipeline):
    result = edgeq(pipeline, "promote", MODEL_NAME, pipeline.versions[contract.BASELINE], "--force", "--alias", "try")
    assert result.exit_code == 1 and "not a .tflite" in result.output


def test_best_refuses_without_device_figures(pipeline, client, bundles, fresh_model):
    _version_with_drop(client, pipeline, bundles, fresh_model, 0.2)  # a run no device has reported to
    result = edgeq(pipeline, "promote", fresh_model, "--best", "--device", "pi-nobody")
    assert result.exit_code == 1 and "no device has reported yet" in result.output
    assert _alias(client, fresh_model) is None


def test_best_picks_the_fastest_within_budget_on_that_device(pipeline, client, fresh_model, tmp_path):
    versions = {v: copy_version(client, pipeline, fresh_model, v) for v in ("fp32", "int8", "dynamic")}
    registry = RegistryClient(pipeline.uri)
    for variant, version in versions.items():
        config = PullConfig(fresh_model, tmp_path / variant, "pi-best", version=version, runs=30, warmup=3)
        assert pull(config, registry).code == Exit.OK
    rows = json.loads(edgeq(pipeline, "versions", fresh_model, "--json").output)
    eligible = [r for r in rows if r["accuracy_drop_points"] <= 1.0]
    expected = min(eligible, key=lambda r: r["device_latency_p50_ms"]["pi-best"])["version"]

    result = edgeq(pipeline, "promote", fresh_model, "--best", "--device", "pi-best")

    assert result.exit_code == 0, result.output
    assert f"v{expected} (" in result.output and "fastest on pi-best" in result.output
    assert _alias(client, fresh_model) == expected
    unknown = edgeq(pipeline, "promote", fresh_model, "--best", "--device", "pi-elsewhere")
    assert unknown.exit_code == 1 and "devices with figures: pi-best" in unknown.output


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
    assert again.exit_code == 1 and "no earlier version" in again.output
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
def test_bad_input_is_one_line_and_non_zero(pipeline, args, message):
    result = edgeq(pipeline, *args)
    assert result.exit_code != 0
    assert message in result.output
    assert len([l for l in result.output.splitlines() if l.startswith("Error")]) == 1


def test_server_down_is_one_line_within_seconds():
    start = time.monotonic()
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("edgeq")), "--tracking-uri", f"http://127.0.0.1:{free_port()}", "promote", "m", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0 and "not reachable" in proc.stderr
    assert time.monotonic() - start < 30
