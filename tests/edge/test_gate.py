"""The device's health gate: its rules on figures, and on a real bundle that disagrees with its registration."""
from __future__ import annotations

import math

import pytest

from edge import contract
from edge.benchmark import BenchmarkResult, LatencyStats
from edge.contract import ExitCode as Exit
from edge.gate import FALSE_REJECTION_RATE, GateLimits, judge, min_hits
from edge.puller import PullConfig, pull
from edge.state import DeviceState
from tests.edge.registry_rest import disagreeing_bundle
from tests.edge.reports import device_report


def _result(accuracy=1.0, n=32, p50=1.0, p99=2.0, rss=60.0) -> BenchmarkResult:
    return BenchmarkResult(LatencyStats(p50, p50, p99, p50, 0.1, 10), accuracy, n, rss, None)


def _binom_below(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k))


@pytest.mark.parametrize("p,n", [(0.978, 32), (0.9, 32), (0.5, 10), (0.95, 200), (0.7, 64)])
def test_min_hits_is_the_binomial_bound(p, n):
    k = min_hits(p, n)
    assert _binom_below(k, n, p) <= FALSE_REJECTION_RATE < _binom_below(k + 1, n, p)


def test_the_bound_grows_with_the_sample():
    assert min_hits(0.95, 1000) / 1000 > min_hits(0.95, 32) / 32


def test_the_article_int8_failure_is_rejected_with_bound_and_sample_size():
    verdict = judge(_result(accuracy=3 / 32), 0.978, GateLimits())
    assert not verdict.healthy
    assert "9.4% (3/32)" in verdict.reason and "87.5%" in verdict.reason and "32 images" in verdict.reason


def test_a_sample_as_good_as_registered_passes():
    assert judge(_result(accuracy=30 / 32), 0.978, GateLimits()).healthy


@pytest.mark.parametrize("limits,figure", [
    (GateLimits(min_sample_accuracy=0.99), "--min-sample-accuracy"),
    (GateLimits(max_p99_ms=1.5), "--max-p99-ms"),
    (GateLimits(max_rss_mb=50), "--max-rss-mb"),
])
def test_each_explicit_limit_rejects_and_is_named(limits, figure):
    verdict = judge(_result(accuracy=31 / 32), None, limits)
    assert not verdict.healthy and figure in verdict.reason


def test_slowdown_is_relative_to_the_replaced_version():
    assert judge(_result(p50=1.4), None, GateLimits(max_slowdown=1.5), replaced_p50_ms=1.0).healthy
    slow = judge(_result(p50=2.0), None, GateLimits(max_slowdown=1.5), replaced_p50_ms=1.0)
    assert not slow.healthy and "2.00×" in slow.reason


def _config(state, model, **kw):
    return PullConfig(model=model, state_dir=state, device_id="pi-gate", runs=10, warmup=1, **kw)


def test_a_version_failing_the_gate_is_not_installed_and_its_run_learns_why(register, rest, registry, fresh_model, tmp_path):
    serving = register(fresh_model, "fp32")
    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK
    bad = register(fresh_model, "int8", bundle=disagreeing_bundle("int8", tmp_path / "disagrees"))

    outcome = pull(_config(tmp_path, fresh_model), registry)

    assert outcome.code == Exit.REJECTED, outcome.message
    assert "health gate" in outcome.message and f"v{serving.version} keeps serving" in outcome.message
    assert DeviceState(tmp_path).current().version == serving.version
    assert not list((tmp_path / "models").glob(f"*/v{bad.version}-*"))
    metrics, tags = device_report(rest, tmp_path, bad.version)
    assert tags[contract.D_STATUS] == contract.STATUS_REJECTED
    assert "below" in tags[contract.D_REASON]
    assert metrics[contract.D_SAMPLE_ACCURACY] < metrics[contract.D_ACCURACY_BOUND]
    assert metrics[contract.D_SAMPLE_SIZE] == 32


def test_explicit_limits_reject_on_the_device(register, registry, fresh_model, tmp_path):
    register(fresh_model, "int8")
    outcome = pull(_config(tmp_path, fresh_model, gate=GateLimits(max_p99_ms=1e-6)), registry)
    assert outcome.code == Exit.REJECTED and "--max-p99-ms" in outcome.message
    assert DeviceState(tmp_path).current() is None


def test_max_slowdown_compares_with_the_serving_version_measured_here(register, registry, fresh_model, tmp_path):
    register(fresh_model, "int8")
    assert pull(_config(tmp_path, fresh_model), registry).code == Exit.OK
    register(fresh_model, "fp32")
    outcome = pull(_config(tmp_path, fresh_model, gate=GateLimits(max_slowdown=1e-3)), registry)
    assert outcome.code == Exit.REJECTED and "replaced version" in outcome.message, outcome.message
