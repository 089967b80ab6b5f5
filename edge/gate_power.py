"""The power of the device's accuracy gate: how big a sample refuses a version losing more than a budget, and how likely.

The gate (``edge.gate.min_hits``) refuses a version whose sample score on a device is
below the fewest hits a model as good as registered gives with probability ≥ 1 − α
(α = ``edge.gate.FALSE_REJECTION_RATE``, 0.1 %). Its power against a version whose true
accuracy is ``p`` lower by ``d`` points is P(X < k) for X ~ Binomial(n, p − d/100). This
module chooses the sample size n that reaches a stated power at the accuracy budget,
within a bounded download, and says which drop the chosen n detects. Pure math: no
TensorFlow, no numpy.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from edge.gate import FALSE_REJECTION_RATE, min_hits

DEFAULT_POWER = 0.9
# The sample a device downloads with every version: at most this many bytes of uint8 pixels (sample.npz compresses
# them further) — well under the device's 64 MiB cap on an auxiliary file — and at most this many images, so the
# check on a Pi stays within seconds to a few minutes for the models edgeq builds.
MAX_SAMPLE_BYTES = 24 << 20
MAX_SAMPLE_IMAGES = 1000
_DROP_RESOLUTION = 0.1  # points


def rejection_probability(registered_accuracy: float, true_accuracy: float, n: int,
                          false_rejection_rate: float = FALSE_REJECTION_RATE) -> float:
    """P(the gate refuses) on ``n`` images for a version registered at one accuracy that truly has another."""
    k = min_hits(registered_accuracy, n, false_rejection_rate)
    return _binomial_cdf_below(k, n, min(max(true_accuracy, 0.0), 1.0))


def _binomial_cdf_below(k: int, n: int, p: float) -> float:
    """P(X < k) for X ~ Binomial(n, p)."""
    if k <= 0:
        return 0.0
    if k > n:
        return 1.0
    if p <= 0.0:
        return 1.0
    if p >= 1.0:
        return 0.0
    log_p, log_q = math.log(p), math.log1p(-p)
    total = sum(math.exp(math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1) + j * log_p + (n - j) * log_q)
                for j in range(k))
    return min(total, 1.0)


def detectable_drop(registered_accuracy: float, n: int, power: float = DEFAULT_POWER,
                    false_rejection_rate: float = FALSE_REJECTION_RATE) -> float | None:
    """The smallest loss (accuracy points, rounded up to 0.1) the gate refuses with probability ≥ ``power`` on ``n``
    images; None when no loss is refused that often (a sample too small for any refusal)."""
    _check(registered_accuracy, power)
    top = registered_accuracy * 100
    if n <= 0 or rejection_probability(registered_accuracy, 0.0, n, false_rejection_rate) < power:
        return None
    lo, hi = 0, math.ceil(top / _DROP_RESOLUTION)  # in steps of _DROP_RESOLUTION; power rises with the drop
    while lo < hi:
        mid = (lo + hi) // 2
        drop = mid * _DROP_RESOLUTION
        if rejection_probability(registered_accuracy, (top - drop) / 100, n, false_rejection_rate) >= power:
            hi = mid
        else:
            lo = mid + 1
    return round(lo * _DROP_RESOLUTION, 1)


@dataclass(frozen=True)
class SampleChoice:
    size: int  # images to bundle
    detectable_drop: float | None  # points refused with probability `power` at this size (None: none)
    power: float
    budget_points: float
    limited_by: str  # "budget" (the budget is met), or what stopped it: "download", "images", "test split"

    @property
    def meets_budget(self) -> bool:
        return self.detectable_drop is not None and self.detectable_drop <= self.budget_points

    def describe(self) -> str:
        found = f"detects a loss of {self.detectable_drop:g} points" if self.detectable_drop is not None else "detects no loss"
        why = "" if self.limited_by == "budget" else f"; capped by the {self.limited_by} limit"
        return (f"{self.size} sample images: the device gate {found} with probability {self.power:.0%} "
                f"(budget {self.budget_points:g} points{why})")


def sample_size(registered_accuracy: float, budget_points: float, image_bytes: int, available: int,
                power: float = DEFAULT_POWER, max_bytes: int = MAX_SAMPLE_BYTES, max_images: int = MAX_SAMPLE_IMAGES,
                false_rejection_rate: float = FALSE_REJECTION_RATE) -> SampleChoice:
    """The fewest images whose gate refuses a version ``budget_points`` worse with probability ≥ ``power``,
    within ``max_bytes`` of pixels (``image_bytes`` each), ``max_images`` and the ``available`` test images."""
    _check(registered_accuracy, power)
    if budget_points <= 0:
        raise ValueError(f"accuracy budget must be above 0 points, got {budget_points:g}")
    if image_bytes <= 0 or available <= 0:
        raise ValueError(f"need a positive image size and test images, got {image_bytes} bytes and {available} images")
    caps = {"download": max_bytes // image_bytes, "images": max_images, "test split": available}
    limited_by, cap = min(caps.items(), key=lambda kv: kv[1])
    cap = max(cap, 1)
    true_accuracy = registered_accuracy - budget_points / 100

    def enough(n: int) -> bool:
        return rejection_probability(registered_accuracy, true_accuracy, n, false_rejection_rate) >= power

    if not enough(cap):
        return SampleChoice(cap, detectable_drop(registered_accuracy, cap, power, false_rejection_rate), power,
                            budget_points, limited_by)
    # Power grows with n apart from small saw-teeth (k is whole): doubling, then bisecting, finds an n that meets it.
    lo, hi = 0, 1
    while hi < cap and not enough(hi):
        lo, hi = hi, min(hi * 2, cap)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if enough(mid) else (mid, hi)
    return SampleChoice(hi, detectable_drop(registered_accuracy, hi, power, false_rejection_rate), power, budget_points, "budget")


def _check(accuracy: float, power: float) -> None:
    if not 0 < accuracy <= 1:
        raise ValueError(f"registered accuracy must be in (0, 1], got {accuracy:g}")
    if not 0 < power < 1:
        raise ValueError(f"power must be in (0, 1), got {power:g}")
