"""Rollback walks back along the alias history alone: stage steps skipped, the rollback list of earlier edgeq read once."""
from __future__ import annotations

import pytest

from edge import contract
from registry_tools import history, promotion
from registry_tools.lookup import RegistryToolError
from tests.registry_tools.devices import edgeq, new_model, tiny_version

PROD = contract.DEFAULT_ALIAS


def _event(kind: str, src: str | None, dst: str, alias: str = PROD) -> history.Event:
    return history.Event(kind, alias, src, dst, "ci", "2026-12-01T12:00:00+00:00", False, "")


def test_the_walk_skips_steps_that_leave_the_alias_where_it_was_and_pops_what_a_rollback_left():
    events = [_event(history.PROMOTE, None, "1"), _event(history.PROMOTE, "1", "2"), _event(history.PROMOTE, "2", "3"),
              _event(history.ROLLOUT, "3", "3"), _event(history.ROLLOUT, "3", "3")]
    assert promotion._walk(events) == ["1", "2", "3"]
    assert promotion._walk(events + [_event(history.ROLLBACK, "3", "2")]) == ["1", "2"]
    assert promotion._walk(events + [_event(history.ROLLBACK, "3", "2"), _event(history.ROLLBACK, "2", "1")]) == ["1"]
    deleted_then_set = [_event(history.PROMOTE, None, "1"), _event(history.OUTSIDE, "1", ""), _event(history.PROMOTE, None, "4")]
    assert promotion._walk(deleted_then_set) == ["1", "4"]


def test_the_legacy_list_adds_only_what_the_log_does_not_reach():
    assert promotion._missing_from_log(["1", "2", "3"], []) == ["1", "2", "3"]
    assert promotion._missing_from_log(["1", "2", "3"], ["2", "3"]) == ["1", "2"]
    assert promotion._missing_from_log(["1", "2", "3"], ["1", "2", "3", "4"]) == []
    assert promotion._missing_from_log(["1", "2", "3"], ["0", "1", "2", "3"]) == []
    assert promotion._missing_from_log(["1", "2", "3"], ["3", "5"]) == ["1", "2", "3"]
    assert promotion._missing_from_log(["1", "2", "3"], ["4"]) == ["1", "2", "3"]


def test_rollback_goes_back_along_moves_only_the_history_records(server, client):
    """A move recorded in the history by a step that is not edgeq promote (as a staged rollout moves the alias)."""
    model = new_model(client)
    v1, _ = tiny_version(client, model)
    v2, _ = tiny_version(client, model)
    v3, _ = tiny_version(client, model)
    assert edgeq(server, "promote", model, v1).exit_code == 0
    for before, version in ((v1, v2), (v2, v3)):
        promotion._point_alias(client, model, PROD, version, before)
        history.record(client, model, history.new_event(history.PROMOTE, PROD, before, version, "staged"))
        for _ in range(2):
            history.record(client, model, history.new_event(history.ROLLOUT, PROD, version, version, "stage step"))

    assert promotion.rollback_target(client, model, PROD) == (v3, v2)
    rolled = edgeq(server, "rollback", model)
    assert rolled.exit_code == 0 and f"rolled back from v{v3} to v{v2}" in rolled.output
    assert f"rolled back from v{v2} to v{v1}" in edgeq(server, "rollback", model).output


def test_rollback_after_rollback_keeps_walking_back_then_says_there_is_nothing_earlier(server, client):
    model = new_model(client)
    v1, _ = tiny_version(client, model)
    v2, _ = tiny_version(client, model)
    v3, _ = tiny_version(client, model)
    for v in (v1, v2, v3):
        assert edgeq(server, "promote", model, v).exit_code == 0
    assert f"from v{v3} to v{v2}" in edgeq(server, "rollback", model).output
    assert f"from v{v2} to v{v1}" in edgeq(server, "rollback", model).output
    with pytest.raises(RegistryToolError, match="no earlier version"):
        promotion.rollback_target(client, model, PROD)


def test_a_model_with_only_the_rollback_list_of_an_earlier_edgeq_rolls_back_as_before(server, client):
    model = new_model(client)
    v1, _ = tiny_version(client, model)
    v2, _ = tiny_version(client, model)
    v3, _ = tiny_version(client, model, alias=PROD)
    client.set_registered_model_tag(model, contract.alias_history_tag(PROD), f"v{v1} → v{v2} → v{v3}")

    assert promotion.rollback_target(client, model, PROD) == (v3, v2)
    assert f"from v{v3} to v{v2}" in edgeq(server, "rollback", model).output

    tags = client.get_registered_model(model).tags
    assert contract.alias_history_tag(PROD) not in tags, "read once: the history holds it now"
    kept = [(e.kind, e.from_version, e.to_version, e.by) for e in history.read(client, model, PROD)]
    assert kept[:3] == [(history.PROMOTE, None, v1, "earlier edgeq"), (history.PROMOTE, v1, v2, "earlier edgeq"),
                        (history.PROMOTE, v2, v3, "earlier edgeq")]
    assert [k[:3] for k in kept[3:]] == [(history.OUTSIDE, None, v3), (history.ROLLBACK, v3, v2)], \
        "the history had never seen v3 set: noticed as before, after the list's moves"
    assert "unknown" in edgeq(server, "history", model).output, "when the earlier moves happened is not known"
    assert f"from v{v2} to v{v1}" in edgeq(server, "rollback", model).output
    with pytest.raises(RegistryToolError, match="no earlier version"):
        promotion.rollback_target(client, model, PROD)


def test_the_legacy_list_fills_in_only_what_fell_out_of_the_history(server, client):
    model = new_model(client)
    v1, _ = tiny_version(client, model)
    v2, _ = tiny_version(client, model)
    v3, _ = tiny_version(client, model, alias=PROD)
    # As an earlier edgeq left it: the list reaches v1, the history kept only the newest move.
    client.set_registered_model_tag(model, contract.alias_history_tag(PROD), f"v{v1} → v{v2} → v{v3}")
    history.record(client, model, history.new_event(history.PROMOTE, PROD, v2, v3, "kept"))

    assert f"from v{v3} to v{v2}" in edgeq(server, "rollback", model).output
    assert f"from v{v2} to v{v1}" in edgeq(server, "rollback", model).output
    moves = [(e.from_version, e.to_version) for e in history.read(client, model, PROD)]
    assert moves == [(None, v1), (v1, v2), (v2, v3), (v3, v2), (v2, v1)], "each move once"
