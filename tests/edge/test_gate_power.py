"""The gate's stated power: the binomial math, checked against simulation, the caps and the issue's own example."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edge import gate_power
from edge.gate import FALSE_REJECTION_RATE, min_hits

IMAGE_224 = 224 * 224 * 3


def test_the_issues_example_32_images_miss_a_model_12_points_worse_and_the_chosen_sample_catches_it():
    # A version claiming 93.4 % that truly scores 81 % passed on a device at 29/32.
    assert gate_power.rejection_probability(0.934, 0.81, 32) < 0.3
    choice = gate_power.sample_size(0.934, 1.0, IMAGE_224, available=2326)
    assert (choice.size, choice.limited_by) == (167, "download")
    assert choice.size * IMAGE_224 <= gate_power.MAX_SAMPLE_BYTES
    assert gate_power.rejection_probability(0.934, 0.81, choice.size) > 0.9
    assert choice.detectable_drop is not None and choice.detectable_drop < 12.4 and not choice.meets_budget


@pytest.mark.parametrize(("registered", "true", "n"), [(0.934, 0.81, 32), (0.97, 0.90, 111), (0.98, 0.95, 180)])
def test_rejection_probability_agrees_with_simulated_devices(registered, true, n):
    rng = np.random.default_rng(7)
    hits = rng.binomial(n, true, size=40_000)
    simulated = float(np.mean(hits < min_hits(registered, n)))
    assert abs(gate_power.rejection_probability(registered, true, n) - simulated) < 0.01


@pytest.mark.parametrize("n", [16, 32, 167, 1000])
@pytest.mark.parametrize("registered", [0.8, 0.934, 0.98])
def test_a_version_as_good_as_registered_is_refused_less_than_the_false_rejection_rate(registered, n):
    assert gate_power.rejection_probability(registered, registered, n) <= FALSE_REJECTION_RATE


def test_the_detectable_drop_is_what_it_claims_and_shrinks_with_the_sample():
    drops = [gate_power.detectable_drop(0.95, n) for n in (32, 64, 128, 256, 512)]
    assert drops == sorted(drops, reverse=True) and drops[-1] < drops[0] / 2
    for n, drop in zip((32, 64, 128, 256, 512), drops):
        assert gate_power.rejection_probability(0.95, 0.95 - drop / 100, n) >= 0.9
        assert gate_power.rejection_probability(0.95, 0.95 - (drop - 0.1) / 100, n) < 0.9, "the smallest such drop"
    assert gate_power.detectable_drop(0.95, 2) is None, "two images refuse nothing at a 0.1 % false alarm rate"


def test_the_budget_sets_the_size_when_the_caps_allow_it():
    choice = gate_power.sample_size(0.98, 10.0, 16 * 16 * 3, available=180)
    assert choice.limited_by == "budget" and choice.meets_budget and choice.size < 180
    assert gate_power.rejection_probability(0.98, 0.88, choice.size) >= 0.9
    bigger_budget = gate_power.sample_size(0.98, 20.0, 16 * 16 * 3, available=180)
    assert bigger_budget.size < choice.size
    assert "with probability 90%" in choice.describe() and "capped" not in choice.describe()


def test_the_caps_bound_the_download():
    assert gate_power.sample_size(0.98, 1.0, 16 * 16 * 3, available=180).limited_by == "test split"
    many = gate_power.sample_size(0.98, 1.0, 16 * 16 * 3, available=100_000)
    assert (many.size, many.limited_by) == (gate_power.MAX_SAMPLE_IMAGES, "images")
    huge_images = gate_power.sample_size(0.98, 1.0, 4096 * 4096 * 3, available=1000)
    assert huge_images.size == 1 and huge_images.detectable_drop is None


@pytest.mark.parametrize("args", [(0.0, 1.0, 10, 10), (0.9, 0.0, 10, 10), (0.9, 1.0, 0, 10), (0.9, 1.0, 10, 0)])
def test_bad_input_is_a_value_error_naming_it(args):
    with pytest.raises(ValueError):
        gate_power.sample_size(*args)


def test_no_tensorflow_on_the_way():
    code = "import sys, edge.gate_power; sys.exit('tensorflow' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0
