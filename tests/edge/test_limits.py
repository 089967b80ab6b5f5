"""``--max-p99-ms`` parsed once for the device's gate and the fleet's judges (edge/limits.py)."""
from __future__ import annotations

import pytest

from edge.limits import p99_for, parse_p99


def test_a_device_s_own_entry_wins_over_all_and_a_plain_number_means_all():
    parsed = parse_p99(["50", "pi kitchen=80", "all=40"])
    assert parsed == (("all", 40.0), ("pi_kitchen", 80.0))  # the later all= replaces the plain number
    assert p99_for(parsed, "pi kitchen") == (80.0, "pi_kitchen") and p99_for(parsed, "pi-garage") == (40.0, "all")
    assert p99_for(parse_p99(["pi-a=5"]), "pi-b") is None


@pytest.mark.parametrize("spec", ["fast", "pi-cli=", "=5", "all=-1", "0", "nan"])
def test_a_bad_spec_is_named(spec):
    with pytest.raises(ValueError, match="expected MS, all=MS or DEVICE=MS"):
        parse_p99([spec])
