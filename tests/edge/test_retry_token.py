"""A device's remembered refusal carries the version's retry token: an operator's override asks for one more try."""
from __future__ import annotations

import json

from edge.state import DeviceState


def test_a_refusal_remembered_before_retry_tokens_still_loads(tmp_path):
    state = DeviceState(tmp_path)
    old = [{"name": "m", "version": "2", "sha256": "ab" * 32, "reason": "health gate: crashed", "at": "2026-01-01T00:00:00Z"}]
    (state.root / "rejected.json").write_text(json.dumps(old))
    earlier = state.rejection_for("m", "2", "ab" * 32)
    assert earlier is not None and earlier.retry == ""


def test_the_token_is_remembered_with_the_refusal(tmp_path):
    state = DeviceState(tmp_path)
    state.remember_rejection("m", "2", "ab" * 32, "health gate: crashed", retry="ops@2026-12-07T15:00:00.000+00:00")
    assert state.rejection_for("m", "2", "ab" * 32).retry == "ops@2026-12-07T15:00:00.000+00:00"
