"""Shared names: device keys round-trip and stay valid MLflow keys."""
import pytest

from edge import contract


def test_device_key_round_trips():
    key = contract.device_key("pi4-kitchen", "latency_p50_ms")
    assert key == "device.pi4-kitchen.latency_p50_ms"
    assert contract.parse_device_key(key) == ("pi4-kitchen", "latency_p50_ms")


def test_device_ids_are_sanitized_for_mlflow_keys():
    assert contract.sanitize_device_id(" pi 4.local/x ") == "pi_4_local_x"
    with pytest.raises(ValueError, match="empty"):
        contract.sanitize_device_id("   ")


@pytest.mark.parametrize("key", ["test_accuracy", "device.", "device.pi", "device..x"])
def test_other_keys_are_not_device_keys(key):
    assert contract.parse_device_key(key) is None
