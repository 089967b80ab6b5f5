"""Benchmark provenance from a fake sysfs tree (real files) and a fake ``vcgencmd`` on PATH."""
from __future__ import annotations

import os
import shutil
import stat
import time
from pathlib import Path

import pytest

from edge import contract, provenance


def make_sysfs(root: Path, governor: str = "ondemand", freq_khz: int = 1500000, temp_milli: int = 48300,
               throttle_count: int | None = None) -> Path:
    cpufreq = root / "devices/system/cpu/cpu0/cpufreq"
    cpufreq.mkdir(parents=True, exist_ok=True)
    (cpufreq / "scaling_governor").write_text(governor + "\n")
    (cpufreq / "scaling_cur_freq").write_text(f"{freq_khz}\n")
    zone = root / "class/thermal/thermal_zone0"
    zone.mkdir(parents=True, exist_ok=True)
    (zone / "temp").write_text(f"{temp_milli}\n")
    if throttle_count is not None:
        counts = root / "devices/system/cpu/cpu0/thermal_throttle"
        counts.mkdir(parents=True, exist_ok=True)
        (counts / "core_throttle_count").write_text(f"{throttle_count}\n")
    return root


@pytest.fixture()
def vcgencmd(tmp_path, monkeypatch):
    """A ``vcgencmd`` script first on PATH; write the value it prints into the returned file."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    value = tmp_path / "throttled_value"
    script = bindir / "vcgencmd"
    script.write_text(f'#!/bin/sh\n[ "$1" = get_throttled ] || exit 1\necho "throttled=$(cat {value})"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    return value


def _after(start, root):
    return provenance.after(start, threads=2, runtime="ai-edge-litert", runtime_version="2.3.0", delegate="xnnpack",
                            root=root)


def test_reads_governor_frequency_and_temperatures_before_and_after(tmp_path):
    root = make_sysfs(tmp_path / "sys", governor="ondemand", freq_khz=600000, temp_milli=45100)
    start = provenance.before(root)
    make_sysfs(root, governor="ondemand", freq_khz=1800000, temp_milli=61250)

    result = _after(start, root)

    assert result.metrics == {contract.D_CPU_FREQ_MHZ: 1800.0, contract.D_TEMP_BEFORE_C: 45.1,
                              contract.D_TEMP_AFTER_C: 61.25}
    assert result.tags[contract.D_GOVERNOR] == "ondemand"
    assert result.tags[contract.D_THREADS] == "2"
    assert result.tags[contract.D_RUNTIME] == "ai-edge-litert" and result.tags[contract.D_RUNTIME_VERSION] == "2.3.0"
    assert result.tags[contract.D_DELEGATE] == "xnnpack"


def test_a_machine_without_sensors_or_vcgencmd_reports_unknown_not_an_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    root = tmp_path / "bare-sys"
    root.mkdir()
    result = provenance.after(provenance.before(root), threads=None, runtime="tflite-runtime",
                              runtime_version="2.14.0", delegate="none", root=root)
    assert result.metrics == {}
    assert result.throttled == provenance.UNKNOWN
    assert result.tags[contract.D_GOVERNOR] == provenance.UNKNOWN
    assert result.tags[contract.D_THROTTLE_FLAGS] == provenance.UNKNOWN
    assert result.tags[contract.D_THREADS] == "default"


def test_a_pi_that_is_not_throttled_says_no(tmp_path, vcgencmd):
    root = make_sysfs(tmp_path / "sys")
    vcgencmd.write_text("0x0")
    result = _after(provenance.before(root), root)
    assert result.throttled == provenance.NO
    assert result.tags[contract.D_THROTTLE_FLAGS].startswith("0x0:")


def test_a_pi_throttled_right_now_is_marked_throttled_with_its_flags(tmp_path, vcgencmd):
    root = make_sysfs(tmp_path / "sys")
    vcgencmd.write_text("0x0")
    start = provenance.before(root)
    vcgencmd.write_text("0x50005")  # under-voltage and throttled, now and since boot

    result = _after(start, root)

    assert result.throttled == provenance.YES
    flags = result.tags[contract.D_THROTTLE_FLAGS]
    assert flags.startswith("0x50005:") and "under-voltage" in flags and "since boot" in flags


def test_throttling_that_began_and_ended_during_the_run_counts(tmp_path, vcgencmd):
    root = make_sysfs(tmp_path / "sys")
    vcgencmd.write_text("0x0")
    start = provenance.before(root)
    vcgencmd.write_text("0x40000")  # "throttling has occurred", nothing now
    assert _after(start, root).throttled == provenance.YES


def test_throttling_long_before_the_run_does_not_mark_it(tmp_path, vcgencmd):
    root = make_sysfs(tmp_path / "sys")
    vcgencmd.write_text("0x40000")  # happened since boot, already before the run
    assert _after(provenance.before(root), root).throttled == provenance.NO


def test_a_hanging_or_broken_vcgencmd_gives_unknown(tmp_path, monkeypatch):
    bindir = tmp_path / "bin"
    bindir.mkdir()
    script = bindir / "vcgencmd"
    script.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 30\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bindir))
    monkeypatch.setattr(provenance, "VCGENCMD_TIMEOUT_S", 0.3)
    start = time.monotonic()
    assert provenance.pi_throttled_flags() is None
    assert time.monotonic() - start < 10, "the timeout did not stop a hanging vcgencmd"
    script.write_text("#!/bin/sh\necho 'VCHI initialization failed'\nexit 255\n")
    assert provenance.pi_throttled_flags() is None


def test_a_growing_kernel_throttle_count_marks_the_run_throttled(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    root = make_sysfs(tmp_path / "sys", throttle_count=7)
    start = provenance.before(root)
    assert _after(start, root).throttled == provenance.NO
    make_sysfs(root, throttle_count=9)
    assert _after(start, root).throttled == provenance.YES
