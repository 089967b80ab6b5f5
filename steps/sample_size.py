"""How many labelled test images each version bundles for the device's accuracy gate, and the power that gives it."""
from __future__ import annotations

from edge import contract, gate_power

AUTO = "auto"


def parse(text: str | int) -> int:
    """``--sample-size``: ``auto`` (0: chosen from the accuracy budget) or a whole number ≥ 1."""
    value = str(text).strip().lower()
    if value == AUTO:
        return 0
    try:
        number = float(value)  # MLproject passes float parameters as "32.0"
    except ValueError:
        number = -1.0
    if number < 1 or number != int(number):
        raise ValueError(f"--sample-size {text!r}: give {AUTO} (chosen from the accuracy budget) or a whole number ≥ 1")
    return int(number)


def choose(requested: int, baseline_accuracy: float, image_size: int, available: int,
           budget_points: float = contract.DEFAULT_MAX_ACCURACY_DROP) -> gate_power.SampleChoice:
    """``requested`` images (0: the fewest that refuse a version ``budget_points`` worse than the baseline with
    probability ``contract.GATE_POWER``, within the download bound of ``edge.gate_power``)."""
    image_bytes = image_size * image_size * 3
    accuracy = min(max(baseline_accuracy, 0.01), 1.0)
    if requested == 0:
        return gate_power.sample_size(accuracy, budget_points, image_bytes, available, contract.GATE_POWER)
    size = min(requested, available)
    return gate_power.SampleChoice(size, gate_power.detectable_drop(accuracy, size, contract.GATE_POWER),
                                   contract.GATE_POWER, budget_points, "budget" if size == requested else "test split")


def gate_figures(registered_accuracy: float, sample_size: int) -> tuple[dict[str, str], dict[str, float]]:
    """(version tags, run metrics) stating the gate's power on this version's bundled sample."""
    drop = gate_power.detectable_drop(min(max(registered_accuracy, 0.01), 1.0), sample_size, contract.GATE_POWER)
    tags = {contract.TAG_GATE_DETECTABLE_DROP: "none" if drop is None else f"{drop:g}",
            contract.TAG_GATE_POWER: f"{contract.GATE_POWER:g}", contract.TAG_GATE_SAMPLE_SIZE: str(sample_size)}
    return tags, ({} if drop is None else {contract.M_GATE_DETECTABLE_DROP: drop})
