"""``edgeq history``: promotions and rollbacks a person can read, in the CLI and in the model's description."""
from __future__ import annotations

import json

from click.testing import CliRunner

from edge import contract
from registry_tools import history
from registry_tools.cli import main
from tests.registry_tools.devices import edgeq, new_model, report, tiny_version


def test_history_lists_promotions_and_rollbacks_newest_first_and_rollback_still_works(server, client):
    model = new_model(client)
    client.update_registered_model(model, description="Digits classifier for the door sensor.")
    v1, _ = tiny_version(client, model)
    v2, run2 = tiny_version(client, model, drop=0.4)
    assert edgeq(server, "promote", model, v1, "--reason", "first release").exit_code == 0
    assert edgeq(server, "promote", model, v2, "--alias", contract.CANARY_ALIAS).exit_code == 0
    report(client, run2, "pi-a", v2)
    assert edgeq(server, "promote", model, "--from", "canary", "--require-devices", "1").exit_code == 0
    rolled = edgeq(server, "rollback", model, "--reason", "door sensor app crashed on v2")
    assert rolled.exit_code == 0 and f"rolled back from v{v2} to v{v1}" in rolled.output
    assert str(client.get_registered_model(model).aliases[contract.DEFAULT_ALIAS]) == v1

    events = json.loads(edgeq(server, "history", model, "--json").stdout)
    summary = [(e["kind"], e["alias"], e["from_version"], e["to_version"], e["forced"]) for e in events]
    assert summary == [
        ("rollback", contract.DEFAULT_ALIAS, v2, v1, False),
        ("promote", contract.DEFAULT_ALIAS, v1, v2, False),
        ("promote", contract.CANARY_ALIAS, None, v2, False),
        ("promote", contract.DEFAULT_ALIAS, None, v1, False),
    ]
    assert events[0]["reason"] == "door sensor app crashed on v2"
    assert events[1]["reason"].startswith(f"canary v{v2}: 1 of 1 required devices healthy within limits: pi-a (p50 1.00 ms")
    assert events[3]["reason"] == "first release; gate passed: drop +0.20 points ≤ 1.00"
    assert all(e["by"] and e["at"].endswith("+00:00") for e in events)

    only_canary = json.loads(edgeq(server, "history", model, "--alias", "canary", "--json").stdout)
    assert [e["alias"] for e in only_canary] == [contract.CANARY_ALIAS]

    table = edgeq(server, "history", model).output.splitlines()
    assert table[0].split()[:6] == ["when", "(UTC)", "alias", "from", "to", "kind"]
    assert f"v{v2}" in table[2] and "rollback" in table[2] and "door sensor app crashed" in table[2]


def test_the_model_description_shows_the_history_as_a_table_and_keeps_the_users_text(server, client):
    model = new_model(client)
    client.update_registered_model(model, description="Digits classifier for the door sensor.")
    v1, _ = tiny_version(client, model)
    v2, _ = tiny_version(client, model)
    assert edgeq(server, "promote", model, v1).exit_code == 0
    assert edgeq(server, "promote", model, v2, "--force", "--reason", "hotfix | urgent").exit_code == 0

    description = client.get_registered_model(model).description
    own, heading, table = description.partition(contract.HISTORY_HEADING)
    assert own.strip() == "Digits classifier for the door sensor." and heading
    rows = [line for line in table.splitlines() if line.startswith("| 20")]
    assert len(rows) == 2
    assert f"| v{v1} → v{v2} | promote (forced) |" in rows[0] and "hotfix \\| urgent" in rows[0]
    assert f"| unset → v{v1} | promote |" in rows[1]


def test_history_of_a_model_never_promoted_says_so(server, client):
    model = new_model(client)
    result = edgeq(server, "history", model)
    assert result.exit_code == 0 and "no alias changes recorded" in result.output


def test_the_table_fits_the_terminal_unless_wide(server, client):
    model = new_model(client)
    v1, _ = tiny_version(client, model)
    reason = "the door sensor team asked for it " * 4
    assert edgeq(server, "promote", model, v1, "--reason", reason).exit_code == 0
    args = ["--tracking-uri", server.uri, "history", model]

    fitted = CliRunner().invoke(main, args, env={"COLUMNS": "70"}).output.splitlines()
    wide = CliRunner().invoke(main, [*args, "--wide"], env={"COLUMNS": "70"}).output.splitlines()

    assert fitted and all(len(line) <= 70 for line in fitted), fitted
    assert reason.strip() in wide[2] and len(wide[2]) > 70


def test_history_of_an_alias_without_changes_names_the_aliases_that_have_some(server, client):
    model = new_model(client)
    v1, _ = tiny_version(client, model)
    assert edgeq(server, "promote", model, v1).exit_code == 0
    assert edgeq(server, "promote", model, v1, "--alias", contract.CANARY_ALIAS).exit_code == 0

    result = edgeq(server, "history", model, "--alias", "staging")

    assert result.exit_code == 0
    assert result.output == "no changes of alias staging recorded by edgeq yet; aliases with changes: canary, production\n"
    assert "no changes of alias staging recorded by edgeq yet (nor of any other alias)" in edgeq(
        server, "history", new_model(client), "--alias", "staging").output


def _event(i: int, reason: str) -> history.Event:
    return history.Event("promote", "production", str(i), str(i + 1), "ci", f"2026-11-26T12:{i % 60:02d}:00+00:00",
                         False, reason)


def test_a_long_history_stays_within_what_the_sql_stores_hold():
    events = [_event(i, "canary evidence " + "x" * 900) for i in range(80)]
    encoded = history._encode(events)
    assert len(encoded) <= history.STORE_LIMIT
    kept = history._decode(encoded)
    assert kept and kept[-1].to_version == "80", "the newest events are the ones kept"
    assert all(len(e.reason) <= 400 for e in kept)
    description = history.with_section("x" * 3000, events)
    assert len(description) <= history.STORE_LIMIT and description.startswith("x" * 3000 + "\n\n")
    assert contract.HISTORY_HEADING in description and "| v79 → v80 |" in description
    assert history.with_section("y" * 4950, events) == "y" * 4950, "the user's own text is never cut"


def test_the_history_tag_reads_as_sentences_in_the_ui_and_round_trips(server, client):
    model = new_model(client)
    v1, _ = tiny_version(client, model)
    v2, _ = tiny_version(client, model)
    assert edgeq(server, "promote", model, v1, "--reason", "first | release\nline two").exit_code == 0
    assert edgeq(server, "promote", model, v2, "--force").exit_code == 0

    tags = client.get_registered_model(model).tags
    lines = tags[contract.TAG_HISTORY].splitlines()
    assert len(lines) == 2 and not any(c in tags[contract.TAG_HISTORY] for c in "{[\"")
    assert f"| production | v{v1} → v{v2} | promote (forced) |" in lines[0], "newest first"
    assert lines[1].endswith("first | release line two; gate passed: drop +0.20 points ≤ 1.00")
    assert lines[1].startswith("20") and f"| production | unset → v{v1} | promote |" in lines[1]
    assert contract.alias_history_tag("production") not in tags, "the history is the one record of the moves"

    events = history.read(client, model)
    assert [(e.from_version, e.to_version, e.forced) for e in events] == [(None, v1, False), (v1, v2, True)]
    assert events[0].reason.startswith("first | release line two")


def test_tricky_fields_round_trip_and_the_json_of_older_versions_is_still_read():
    events = [history.Event("promote", "production", None, "1", "a|b", "2026-11-26T12:00:00+00:00", False, "x | y"),
              history.Event(history.OUTSIDE, "canary", "1", "", "unknown", "2026-11-26T12:01:00+00:00", False, "deleted"),
              history.Event("rollback", "production", "2", "1", "guard", "2026-11-26T12:02:00+00:00", True, "")]
    back = history._decode(history._encode(events))
    assert [(e.kind, e.alias, e.from_version, e.to_version, e.forced, e.reason) for e in back] == [
        ("promote", "production", None, "1", False, "x | y"), (history.OUTSIDE, "canary", "1", "", False, "deleted"),
        ("rollback", "production", "2", "1", True, "")]
    assert back[0].by == "a¦b"
    legacy = json.dumps([{"kind": "promote", "alias": "production", "from": None, "to": "3", "by": "ci",
                          "at": "2026-01-01T00:00:00+00:00", "forced": False, "why": "old"}])
    assert [(e.to_version, e.reason) for e in history._decode(legacy)] == [("3", "old")]
    assert history._decode("someone typed this by hand") == []


def test_an_alias_set_with_a_plain_client_shows_as_outside_edgeq_and_promote_records_it(server, client):
    model = new_model(client)
    v1, _ = tiny_version(client, model, alias=contract.DEFAULT_ALIAS)  # a plain set_registered_model_alias
    v2, _ = tiny_version(client, model)

    shown = json.loads(edgeq(server, "history", model, "--json").stdout)
    assert [(e["kind"], e["alias"], e["from_version"], e["to_version"], e["by"], e["at"]) for e in shown] == [
        (contract.HISTORY_OUTSIDE, "production", None, v1, "unknown", "")]
    assert "not recorded yet" in edgeq(server, "history", model).output
    assert contract.TAG_HISTORY not in client.get_registered_model(model).tags, "reading never writes"

    assert edgeq(server, "promote", model, v2).exit_code == 0
    kept = json.loads(edgeq(server, "history", model, "--json").stdout)
    assert [(e["kind"], e["from_version"], e["to_version"]) for e in kept] == [
        ("promote", v1, v2), (contract.HISTORY_OUTSIDE, None, v1)]
    assert kept[1]["at"] and "noticed by edgeq promote" in kept[1]["reason"]
    client.delete_registered_model_alias(model, contract.DEFAULT_ALIAS)
    gone = json.loads(edgeq(server, "history", model, "--json").stdout)[0]
    assert (gone["kind"], gone["from_version"], gone["to_version"]) == (contract.HISTORY_OUTSIDE, v2, "")
    assert edgeq(server, "rollback", model).exit_code == contract.ExitCode.BAD_CONFIG
