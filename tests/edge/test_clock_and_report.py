"""The device's clock against the server's Date header, and the report layout: keys, run, stamps."""
from __future__ import annotations

import time
from email.utils import formatdate

import pytest

from edge import clock, contract
from edge.benchmark import BenchmarkResult, LatencyStats
from edge.gate import Verdict
from edge.registry_client import ModelVersion
from edge.report import ReportContext, build_report
from edge.runtime import Runtime

YEAR_2030 = 1893456000.0  # 2030-01-01T00:00:00Z


@pytest.fixture(autouse=True)
def _fresh_clock():
    saved = clock.CLOCK.skew_s
    clock.CLOCK.skew_s = None
    yield
    clock.CLOCK.skew_s = saved


def test_a_device_clock_in_2030_is_corrected_to_the_servers_time(monkeypatch):
    monkeypatch.setenv(contract.ENV_CLOCK_OFFSET_S, str(YEAR_2030 - time.time()))
    assert clock.device_time() > YEAR_2030 - 5
    clock.observe_date(formatdate(time.time(), usegmt=True))  # the server's answer says "now"
    assert abs(clock.CLOCK.now() - time.time()) < 2.5
    assert float(clock.CLOCK.skew_tag()) > 86400 * 365


def test_a_device_clock_an_hour_behind_is_corrected(monkeypatch):
    monkeypatch.setenv(contract.ENV_CLOCK_OFFSET_S, "-3600")
    clock.observe_date(formatdate(time.time(), usegmt=True))
    assert abs(clock.now_ms() / 1000 - time.time()) < 2.5
    assert -3602 <= float(clock.CLOCK.skew_tag()) <= -3598


def test_a_small_skew_is_not_corrected_and_bad_headers_change_nothing():
    clock.observe_date(formatdate(time.time() - 1, usegmt=True))  # within the header's resolution
    assert clock.CLOCK.correction_s() == 0.0 and clock.CLOCK.skew_tag() == "0"
    before = clock.CLOCK.skew_s
    for bad in (None, "", "yesterday", "Mon, 99 Foo 2026 25:61:00 GMT"):
        clock.observe_date(bad)
    assert clock.CLOCK.skew_s == before


def test_no_answer_yet_means_the_devices_own_clock(monkeypatch):
    monkeypatch.setenv(contract.ENV_CLOCK_OFFSET_S, "-3600")
    assert clock.CLOCK.skew_tag() is None
    assert abs(clock.CLOCK.now() - (time.time() - 3600)) < 1


def _result() -> BenchmarkResult:
    return BenchmarkResult(LatencyStats(10.0, 12.0, 15.0, 10.5, 0.5, 50), 0.95, 64, 61.0, 4)


_RUNTIME = Runtime("ai-edge-litert", "2.3.0", "2.19", object)
_MV = ModelVersion("m", "7", "version-run", {}, ())


def test_a_report_goes_to_the_device_run_keyed_by_version_with_an_identifying_first_metric(monkeypatch):
    monkeypatch.setenv(contract.ENV_CLOCK_OFFSET_S, "-3600")
    clock.observe_date(formatdate(time.time(), usegmt=True))
    report = build_report(ReportContext("pi-1", "canary", None, 4, _RUNTIME, "device-run"), _MV, _result(),
                          Verdict((), 0.9), None)
    assert report.run_id == "device-run" and report.step == 7
    first_key, first_value = next(iter(report.metrics.items()))
    assert (first_key, first_value) == (contract.M_REPORTED_VERSION, 7.0)
    assert report.metrics["v7.latency_p99_ms"] == 15.0 and report.metrics["v7.sample_accuracy_lower_bound"] == 0.9
    assert report.metrics[contract.D_P50] == 10.0  # charted across versions on the device's run
    assert not any(k.startswith(contract.DEVICE_PREFIX) for k in [*report.metrics, *report.tags])
    assert report.tags["v7.status"] == "healthy" and report.tags["v7.alias"] == "canary"
    assert abs(report.timestamp_ms / 1000 - time.time()) < 2.5, "stamped with the server's time"
    assert report.tags["v7.reported_at"][:4] == time.strftime("%Y", time.gmtime())
    assert report.tags[contract.TAG_CLOCK_SKEW_S] == "-3600"


def test_a_refusal_without_figures_still_carries_the_identifying_metric():
    report = build_report(ReportContext("pi-1", "canary", None, None, _RUNTIME, "device-run"), _MV, None, None, None,
                          reason="checksum mismatch")
    assert list(report.metrics) == [contract.M_REPORTED_VERSION]
    assert report.tags["v7.status"] == "rejected" and report.tags["v7.reason"] == "checksum mismatch"


def test_without_a_device_run_the_legacy_layout_is_kept_with_the_identifying_metric():
    report = build_report(ReportContext("pi-1", "canary", None, None, _RUNTIME), _MV, None, None, None, reason="x")
    assert report.run_id == "version-run"
    assert next(iter(report.metrics)) == contract.device_key("pi-1", contract.M_REPORTED_VERSION)
    assert report.tags[contract.device_key("pi-1", contract.D_STATUS)] == "rejected"


def test_version_keys_round_trip_and_refuse_what_is_not_a_version():
    assert contract.parse_version_key(contract.version_key("12", "latency_p50_ms")) == ("12", "latency_p50_ms")
    for key in ("latency_p50_ms", "v.x", "vx.status", "v12", "device.pi.v1"):
        assert contract.parse_version_key(key) is None
    with pytest.raises(ValueError):
        contract.version_key("1.5", "status")
