"""registry_tools/rollout.py against a real server: the plan, start, each step's three outcomes, pause, a person's move."""
from __future__ import annotations

import json
import time

import pytest

from edge import contract
from edge.rollout_share import Share, share_of
from registry_tools import history as alias_history
from registry_tools import judge, promotion, rollout
from registry_tools.lookup import GateRefused, RegistryToolError
from tests.registry_tools.devices import new_model, report, tiny_version

PROD = contract.DEFAULT_ALIAS
FAST = rollout.Plan((10.0, 50.0, 100.0), 0.0, judge.Limits(min_devices=1))


@pytest.mark.parametrize("steps, problem", [
    ((), "increasing"), ((5, 5, 100), "increasing"), ((25, 5, 100), "increasing"), ((0, 100), "above 0"),
    ((5, 50), "must end at 100"), ((100,), "edgeq promote"), ((5, 150), "at most 100"),
])
def test_a_plan_that_cannot_run_is_refused_in_one_line(steps, problem):
    with pytest.raises(ValueError, match=problem):
        rollout.Plan(tuple(float(s) for s in steps))


def test_steps_parse_from_the_command_line():
    assert rollout.parse_steps("5, 25%,100") == (5.0, 25.0, 100.0)
    with pytest.raises(ValueError, match="e.g. 5,25,100"):
        rollout.parse_steps("5;25")


def test_an_edited_state_tag_is_one_line_naming_the_fix():
    with pytest.raises(RegistryToolError, match="start the rollout again"):
        rollout.decode('{"alias": "production"}')
    good = rollout.Rollout(PROD, "7", "3", FAST, 0, "2026-12-07T10:00:00.000+00:00", rollout.RUNNING, "ops", "x")
    assert rollout.decode(good.encode()) == good
    with pytest.raises(RegistryToolError):
        rollout.decode(good.encode().replace('"stage": 0', '"stage": 9'))


def _model(client) -> tuple[str, str, str]:
    model = new_model(client, "edgeq-rollout")
    old, _ = tiny_version(client, model, alias=PROD)
    new, run_id = tiny_version(client, model)
    return model, old, new, run_id


def test_start_gives_the_first_share_the_version_and_the_history_says_so(client):
    model, old, new, _ = _model(client)
    started, why = rollout.start(client, model, new, PROD, FAST)
    mv = client.get_model_version(model, new)
    assert client.get_registered_model(model).aliases[PROD] == new
    assert share_of(mv.tags, PROD) == Share(10.0, old) and mv.tags[contract.alias_since_tag(PROD)]
    assert (started.stage, started.status, started.fallback) == (0, rollout.RUNNING, old)
    event = alias_history.read(client, model, PROD)[-1]
    assert (event.kind, event.from_version, event.to_version) == (alias_history.PROMOTE, old, new)
    assert "staged rollout 10,50,100 %: stage 1 of 3 (10 %), the others keep v" + old in event.reason
    assert promotion.rollback_target(client, model, PROD) == (new, old)


def test_start_refuses_what_cannot_be_rolled_out(client):
    model = new_model(client, "edgeq-rollout")
    first, _ = tiny_version(client, model)
    with pytest.raises(RegistryToolError, match="nothing to fall back to"):
        rollout.start(client, model, first, PROD, FAST)
    client.set_registered_model_alias(model, PROD, first)
    with pytest.raises(RegistryToolError, match="already behind production for every device"):
        rollout.start(client, model, first, PROD, FAST)
    far, _ = tiny_version(client, model, drop=5.0)
    with pytest.raises(GateRefused, match="loses 5.00 accuracy points"):
        rollout.start(client, model, far, PROD, FAST)
    assert client.get_registered_model(model).aliases[PROD] == first


def test_a_dry_run_writes_nothing(client):
    model, old, new, _ = _model(client)
    _, message = rollout.start(client, model, new, PROD, FAST, dry_run=True)
    assert message.startswith("dry run: would start") and client.get_registered_model(model).aliases[PROD] == old
    rollout.start(client, model, new, PROD, FAST)
    step = rollout.step(client, model, PROD, dry_run=True)
    assert step.decision == judge.HOLD and rollout.read(client, model, PROD).stage == 0


def test_each_stage_is_judged_on_its_own_window_then_advances_and_completes(client):
    model, old, new, run_id = _model(client)
    rollout.start(client, model, new, PROD, FAST)
    held = rollout.step(client, model, PROD)
    assert held.exit_code == contract.ExitCode.HELD and "too few devices in the window: 0 voted" in held.message

    report(client, run_id, "pi-first", new, alias=PROD)
    time.sleep(3.1)  # past the judge's clock tolerance (2 s) and an unsigned report's whole second
    advanced = rollout.step(client, model, PROD)
    assert advanced.decision == rollout.ADVANCE and advanced.exit_code == 0, advanced.message
    assert share_of(client.get_model_version(model, new).tags, PROD) == Share(50.0, old)
    again = rollout.step(client, model, PROD)
    assert again.decision == judge.HOLD, "stage 1's report is no vote in stage 2"
    assert any(v.why.startswith("made in an earlier stage") for v in again.verdict.votes)

    report(client, run_id, "pi-second", new, alias=PROD)
    done = rollout.step(client, model, PROD)
    assert done.decision == judge.KEEP and done.rollout.status == rollout.COMPLETE, done.message
    assert contract.rollout_tag(PROD) not in client.get_model_version(model, new).tags, "every device takes it"
    kinds = [(e.kind, e.by) for e in alias_history.read(client, model, PROD)]
    assert kinds[-2:] == [(alias_history.ROLLOUT, contract.ROLLOUT_BY)] * 2
    assert rollout.step(client, model, PROD).message.endswith("nothing to do")
    assert promotion.rollback_target(client, model, PROD) == (new, old), "stage steps are no versions to go back to"


def test_a_stage_the_judge_refuses_rolls_the_whole_alias_back_and_marks_the_version(client):
    model, old, new, run_id = _model(client)
    rollout.start(client, model, new, PROD, FAST)
    report(client, run_id, "pi-bad", new, alias=PROD, status=contract.STATUS_REJECTED, reason="health gate: crashed")
    step = rollout.step(client, model, PROD)
    assert step.decision == judge.ROLL_BACK and step.exit_code == contract.ExitCode.REJECTED, step.message
    assert client.get_registered_model(model).aliases[PROD] == old
    mv = client.get_model_version(model, new)
    assert mv.tags[contract.TAG_GUARD_VERDICT] == contract.GUARD_ROLLED_BACK and contract.rollout_tag(PROD) not in mv.tags
    assert client.get_run(run_id).data.tags[contract.TAG_GUARD_VERDICT] == contract.GUARD_ROLLED_BACK, "as the guard does"
    last = alias_history.read(client, model, PROD)[-1]
    assert (last.kind, last.by, last.to_version) == (alias_history.ROLLBACK, contract.ROLLOUT_BY, old)
    with pytest.raises(GateRefused, match="--override-guard"):
        rollout.start(client, model, new, PROD, FAST)


def test_min_stage_time_holds_a_good_stage(client):
    model, old, new, run_id = _model(client)
    rollout.start(client, model, new, PROD, rollout.Plan((10.0, 100.0), 3600.0, judge.Limits(min_devices=1)))
    report(client, run_id, "pi-early", new, alias=PROD)
    step = rollout.step(client, model, PROD)
    assert step.decision == judge.HOLD and "may advance in 59 min" in step.message, step.message


def test_pause_holds_resume_goes_on_and_both_are_in_the_history(client):
    model, old, new, run_id = _model(client)
    rollout.start(client, model, new, PROD, FAST)
    rollout.pause(client, model, PROD, "a customer complaint")
    report(client, run_id, "pi-p", new, alias=PROD)
    paused = rollout.step(client, model, PROD)
    assert paused.decision == "" and "is paused at stage 1 of 3" in paused.message
    assert rollout.read(client, model, PROD).stage == 0
    with pytest.raises(RegistryToolError, match="already paused"):
        rollout.pause(client, model, PROD)
    rollout.resume(client, model, PROD)
    assert rollout.step(client, model, PROD).decision == rollout.ADVANCE
    reasons = [e.reason for e in alias_history.read(client, model, PROD) if e.kind == alias_history.ROLLOUT]
    assert any("paused by" in r and "a customer complaint" in r for r in reasons) and any("resumed by" in r for r in reasons)


def test_a_move_by_anyone_else_ends_the_rollout_and_the_history_says_so(client):
    model, old, new, _ = _model(client)
    rollout.start(client, model, new, PROD, FAST)
    client.set_registered_model_alias(model, PROD, old)  # someone in the MLflow UI
    step = rollout.step(client, model, PROD)
    assert step.ended and step.rollout.status == rollout.REPLACED and f"moved to v{old}" in step.message
    assert contract.rollout_tag(PROD) not in client.get_model_version(model, new).tags
    reasons = [e.reason for e in alias_history.read(client, model, PROD)]
    assert any(r.startswith(f"the staged rollout of v{new} ended") for r in reasons)


def test_starting_over_replaces_the_running_rollout_and_keeps_its_fallback(client):
    model, old, new, _ = _model(client)
    rollout.start(client, model, new, PROD, FAST)
    newer, _ = tiny_version(client, model)
    again, why = rollout.start(client, model, newer, PROD, FAST)
    assert again.fallback == old and f"replaces the rollout of v{new} at 10 %" in why
    assert share_of(client.get_model_version(model, newer).tags, PROD) == Share(10.0, old)
    state = json.loads(client.get_registered_model(model).tags[contract.rollout_state_tag(PROD)])
    assert state["version"] == newer


def test_a_promote_or_a_rollback_replaces_the_running_rollout_and_the_history_says_so(client):
    model, old, new, _ = _model(client)
    rollout.start(client, model, new, PROD, FAST)
    newer, _ = tiny_version(client, model)
    promotion.promote(client, model, newer, PROD, promotion.Gate())
    ended = rollout.read(client, model, PROD)
    assert ended.status == rollout.REPLACED and f"moved to v{newer} (promote)" in ended.note
    assert contract.rollout_tag(PROD) not in client.get_model_version(model, new).tags
    assert f"replaces the staged rollout of v{new} at 10 %" in alias_history.read(client, model, PROD)[-1].reason
    assert rollout.step(client, model, PROD).message.endswith("nothing to do")

    again, _ = tiny_version(client, model)
    rollout.start(client, model, again, PROD, FAST)
    back = promotion.rollback(client, model, PROD)
    assert back.version == newer and rollout.read(client, model, PROD).status == rollout.REPLACED
    assert f"replaces the staged rollout of v{again} at 10 %" in alias_history.read(client, model, PROD)[-1].reason


def test_the_command_line_watches_until_the_rollout_ends_and_refuses_bad_input_in_one_line(server, client):
    from tests.registry_tools.devices import edgeq

    model, old, new, run_id = _model(client)
    for args, words in ((["--steps", "5,x"], "--steps takes percentages"), (["--min-stage-time", "soon"], "30m, 2h"),
                        (["--steps", "50,10,100"], "increasing"), (["--max-rejected-fraction", "2"], "[0, 1)")):
        bad = edgeq(server, "rollout", "start", model, new, *args)
        assert bad.exit_code == 2 and words in bad.output and len(bad.output.strip().splitlines()) == 1, bad.output
    started = edgeq(server, "rollout", "start", model, new, "--steps", "10,100", "--min-stage-time", "0",
                    "--min-devices", "1")
    assert started.exit_code == 0 and f"production → v{new} for 10 % of its devices; the others keep v{old}" in started.output
    report(client, run_id, "pi-w", new, alias=PROD, status=contract.STATUS_REJECTED, reason="health gate: crashed")
    status = json.loads(edgeq(server, "rollout", "status", model, "--json").stdout)
    assert (status["share"], status["status"], status["verdict"]["outcome"]) == (10.0, "running", judge.ROLL_BACK)
    watched = edgeq(server, "rollout", "step", model, "--watch", "1")
    assert watched.exit_code == contract.ExitCode.REJECTED, watched.output
    assert f"production goes back to v{old} for every device" in watched.output
    assert "ended (rolled back" in edgeq(server, "rollout", "step", model).output


def test_the_stage_table_fits_a_100_column_terminal(server, client):
    from click.testing import CliRunner

    from registry_tools.cli import main

    model, old, new, run_id = _model(client)
    rollout.start(client, model, new, PROD, FAST)
    long_reason = "health gate: " + "; ".join(f"p99 latency {50 + i}.00 ms is above --max-p99-ms 40" for i in range(8))
    report(client, run_id, "pi-with-a-rather-long-device-name", new, alias=PROD, status=contract.STATUS_REJECTED,
           reason=long_reason)
    for args in (["rollout", "status", model], ["guard", model, "--explain", "--dry-run", "--min-devices", "1"]):
        out = CliRunner().invoke(main, ["--tracking-uri", server.uri, *args], env={"COLUMNS": "100"}).output
        table = out[out.index("device "):].split(f"\n{model}: ")[0]  # the verdict's own line after it is prose
        assert "pi-with-a-rather-long-device-name" in table and "…" in table, out
        assert max(len(line) for line in table.splitlines()) <= 100, out
        piped = CliRunner().invoke(main, ["--tracking-uri", server.uri, *args], env={"COLUMNS": ""}).output
        assert long_reason in piped, "without a terminal every character stays"
