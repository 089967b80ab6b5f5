"""A stable device id per machine, not the hostname every fresh Pi shares."""
from __future__ import annotations

from edge.device_info import stable_device_id

PI_CPUINFO = "Hardware\t: BCM2835\nRevision\t: c03114\nSerial\t\t: 10000000a1b2c3d4\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"


def test_a_pi_is_named_by_its_serial_hashed(tmp_path):
    machine_id = tmp_path / "machine-id"
    machine_id.write_text("3d1219c7c4c5404aaa1f6d2a48adfda4\n")
    first = stable_device_id((machine_id,), cpuinfo=PI_CPUINFO)
    other_pi = stable_device_id((machine_id,), cpuinfo=PI_CPUINFO.replace("a1b2c3d4", "deadbeef"))
    assert first.startswith("edge-") and len(first) == 17
    assert first != other_pi  # two Pis cloned from one SD card image still differ
    assert "a1b2c3d4" not in first
    assert stable_device_id((machine_id,), cpuinfo=PI_CPUINFO) == first


def test_elsewhere_the_machine_id_names_the_device(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.write_text("11111111111111111111111111111111\n")
    b.write_text("22222222222222222222222222222222\n")
    assert stable_device_id((a,), cpuinfo="") != stable_device_id((b,), cpuinfo="")
    assert stable_device_id((tmp_path / "missing", a), cpuinfo="") == stable_device_id((a,), cpuinfo="")


def test_an_all_zero_serial_is_no_identity(tmp_path):
    a = tmp_path / "a"
    a.write_text("11111111111111111111111111111111\n")
    zero = PI_CPUINFO.replace("10000000a1b2c3d4", "0000000000000000")
    assert stable_device_id((a,), cpuinfo=zero) == stable_device_id((a,), cpuinfo="")
