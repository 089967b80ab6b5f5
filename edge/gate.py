"""The device's health gate: may a new version become current on this device?

The rules, each checked on this device before the swap:

1. sample accuracy ≥ the binomial lower bound of the registered test accuracy for the
   sample's size (a model as good as registered falls below it with probability < 0.1 %);
2. sample accuracy ≥ ``--min-sample-accuracy``;
3. p99 latency ≤ ``--max-p99-ms``;
4. peak RSS ≤ ``--max-rss-mb``;
5. p50 latency ≤ ``--max-slowdown`` × the p50 of the version it replaces, both measured
   here in the same run.

Every failed rule is named, with its figures, in the verdict's reason.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edge.benchmark import BenchmarkResult

FALSE_REJECTION_RATE = 0.001
# Registered accuracies are capped here: one borderline image that flips between two
# CPUs' kernels must not reject a model registered at 100 %.
_MAX_EXPECTED_ACCURACY = 0.99


@dataclass(frozen=True)
class GateLimits:
    min_sample_accuracy: float | None = None
    max_p99_ms: float | None = None
    max_rss_mb: float | None = None
    max_slowdown: float | None = None


@dataclass(frozen=True)
class Verdict:
    failures: tuple[str, ...]
    accuracy_bound: float | None  # the lowest sample accuracy rule 1 accepts, as a fraction

    @property
    def healthy(self) -> bool:
        return not self.failures

    @property
    def reason(self) -> str:
        return "; ".join(self.failures)


def min_hits(expected_accuracy: float, n: int, false_rejection_rate: float = FALSE_REJECTION_RATE) -> int:
    """The fewest correct answers out of ``n`` that a model of ``expected_accuracy`` may give.

    The largest k with P(X < k) ≤ ``false_rejection_rate`` for X ~ Binomial(n, p).
    """
    p = min(max(expected_accuracy, 0.0), _MAX_EXPECTED_ACCURACY)
    if n <= 0 or p <= 0:
        return 0
    log_p, log_q = math.log(p), math.log1p(-p)
    below = 0.0  # P(X < k)
    for k in range(n + 1):
        term = math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1) + k * log_p + (n - k) * log_q)
        if below + term > false_rejection_rate:
            return k
        below += term
    return n


def judge(result: BenchmarkResult, registered_accuracy: float | None, limits: GateLimits,
          replaced_p50_ms: float | None = None) -> Verdict:
    """Apply the rules above to what this device measured."""
    failures = []
    bound = None
    acc, n = result.accuracy, result.sample_size
    if acc is not None and registered_accuracy is not None and n:
        hits_needed = min_hits(registered_accuracy, n)
        bound = hits_needed / n
        hits = round(acc * n)
        if hits < hits_needed:
            failures.append(
                f"sample accuracy {acc:.1%} ({hits}/{n}) is below {bound:.1%}, the least a model registered at "
                f"{registered_accuracy:.1%} scores on {n} images (probability of a false alarm < {FALSE_REJECTION_RATE:.1%})"
            )
    if limits.min_sample_accuracy is not None and acc is not None and acc < limits.min_sample_accuracy:
        # The option is percent (edge/cli.py converts); the limits stay fractions.
        failures.append(f"sample accuracy {acc:.1%} is below --min-sample-accuracy {limits.min_sample_accuracy * 100:g}")
    p99 = result.latency.p99_ms
    if limits.max_p99_ms is not None and p99 > limits.max_p99_ms:
        failures.append(f"p99 latency {p99:.2f} ms is above --max-p99-ms {limits.max_p99_ms:g}")
    if limits.max_rss_mb is not None and result.peak_rss_mb > limits.max_rss_mb:
        failures.append(f"peak RSS {result.peak_rss_mb:.1f} MB is above --max-rss-mb {limits.max_rss_mb:g}")
    if limits.max_slowdown is not None and replaced_p50_ms:
        ratio = result.latency.p50_ms / replaced_p50_ms
        if ratio > limits.max_slowdown:
            failures.append(
                f"p50 {result.latency.p50_ms:.3f} ms is {ratio:.2f}× the replaced version's {replaced_p50_ms:.3f} ms "
                f"(--max-slowdown {limits.max_slowdown:g})"
            )
    return Verdict(tuple(failures), bound)
