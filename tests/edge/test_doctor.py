"""``edgeq-pull doctor``: the runtime and NumPy found here, whether they fit, and the exit code that says so."""
from __future__ import annotations

import platform

import pytest
from click.testing import CliRunner

from edge.cli import main
from edge.doctor import gather
from edge.runtime import find_runtime, package_version
from tests.edge.runtime_venvs import run_in, runtime_python


def test_doctor_names_this_machine_its_runtime_and_numpy_and_exits_0(monkeypatch):
    monkeypatch.delenv("EDGEQ_RUNTIME", raising=False)
    result = CliRunner().invoke(main, ["doctor"], env={"MLFLOW_TRACKING_URI": None, "EDGEQ_MODEL": None})
    assert result.exit_code == 0, result.output
    runtime = find_runtime()
    lines = dict(line.split(None, 1) for line in result.output.splitlines() if line.strip() and not line.startswith("runtime"))
    assert lines["platform"].startswith(f"{platform.system()} {platform.machine()}")
    assert lines["python"].startswith(platform.python_version())
    assert lines["numpy"] == package_version("numpy")
    assert f"{runtime.package} {runtime.version} (≈ TFLite {runtime.tf_equivalent}) <- used" in result.output
    assert lines["verdict"].startswith(f"ok: {runtime.package} {runtime.version}")


def test_version_line_carries_the_same_facts():
    facts = gather()
    runtime = find_runtime()
    assert facts.usable and facts.chosen.package == runtime.package
    assert facts.version_line() == (
        f"edgeq-pull {package_version('edgeq')}: {runtime.label} (≈ TFLite {runtime.tf_equivalent}), "
        f"NumPy {package_version('numpy')}, Python {platform.python_version()}, {platform.system()} {platform.machine()}")


def test_doctor_with_a_runtime_that_is_not_installed_says_what_to_install_and_exits_2():
    missing = [p for p in ("ai-edge-litert", "tflite-runtime") if package_version(p) == "unknown"]
    if not missing:
        pytest.skip("both runtimes are installed here")
    result = CliRunner().invoke(main, ["--runtime", missing[0], "doctor"])
    assert result.exit_code == 2, result.output
    verdict = result.output.splitlines()[-1]
    assert f"NOT USABLE: {missing[0]} is not installed; install it: " in verdict, verdict
    wanted = "tflite-runtime" if platform.machine().startswith("armv") else missing[0]  # no LiteRT on 32-bit ARM
    assert f"pip install {wanted}" in verdict.replace('"', "").replace("==", " "), verdict


def test_doctor_on_tflite_runtime_2_14_with_numpy_2_says_install_numpy_below_2_and_exits_2():
    python = runtime_python("tflite-runtime-2.14-numpy2")
    proc = run_in(python, "-m", "edge.doctor")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "tflite-runtime 2.14.0 (≈ TFLite 2.14.0): unusable (see verdict)" in proc.stdout
    verdict = proc.stdout.splitlines()[-1]
    assert verdict.startswith("verdict   NOT USABLE: tflite-runtime 2.14.0 was built for NumPy 1.x but NumPy 2."), verdict
    assert 'fix: pip install "numpy<2"' in verdict


def test_doctor_on_tflite_runtime_2_14_with_numpy_1_is_usable():
    python = runtime_python("tflite-runtime-2.14")
    proc = run_in(python, "-m", "edge.doctor")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "tflite-runtime 2.14.0 (≈ TFLite 2.14.0) <- used" in proc.stdout
    assert "verdict   ok: tflite-runtime 2.14.0 runs models here with NumPy 1." in proc.stdout
