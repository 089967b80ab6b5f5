"""A staged rollout: the version V behind an alias goes to a growing share of its devices, judged at every stage.

Rolling V out behind alias A from P means: A points at V, V carries the share of A's devices that may take it and
P as the fallback (``contract.rollout_tag``, read by every device, edge/rollout_share.py), and the registered model
carries the rollout's own state (``contract.rollout_state_tag``: steps, stage, when it began, limits, pause).

Each ``step`` asks the judge (registry_tools/judge.py) about the current stage's window — reports on V by devices
following A, made since the stage began — and

- **advances** one step when it says keep and the stage is old enough (``min_stage_s``); the last step removes
  the share, so every device takes V, and the rollout is complete;
- **holds** when it says hold, or the stage is younger than ``min_stage_s``; nothing moves;
- **rolls back** the whole alias to P when it says roll back, marking V as the guard marks a version it rolled
  back (a person promotes it again only with --override-guard).

Every start, stage, pause, resume and end is an event in the alias history. A move of the alias by anyone else (a
promote, a rollback, the MLflow UI) ends the rollout: the next step says so and records it.
"""
from __future__ import annotations

import getpass
from dataclasses import dataclass, replace

from edge import contract
from edge.rollout_share import Share
from registry_tools.api import RegistryApi
from registry_tools import evidence, guard, judge, promotion
from registry_tools import history as alias_history
from registry_tools import rollout_state as state
from registry_tools.lookup import GateRefused, RegistryToolError
from registry_tools.rollout_state import (COMPLETE, ENDED, PAUSED, REPLACED, ROLLED_BACK, RUNNING, Plan, Rollout,
                                          decode, parse_steps, read)

__all__ = ["COMPLETE", "ENDED", "PAUSED", "REPLACED", "ROLLED_BACK", "RUNNING", "Plan", "Rollout", "decode",
           "parse_steps", "read", "start", "step", "pause", "resume", "status", "Step", "ADVANCE"]
ADVANCE = "advance"  # a step's decision besides judge.KEEP / HOLD / ROLL_BACK: the share grew


def _event(client: RegistryApi, name: str, rollout: Rollout, why: str, by: str | None = None) -> None:
    alias_history.record(client, name, alias_history.new_event(alias_history.ROLLOUT, rollout.alias, rollout.version,
                                                               rollout.version, why, by=by))


# -- start ------------------------------------------------------------------------------------------------------------

def start(client: RegistryApi, name: str, version: str, alias: str, plan: Plan, gate: promotion.Gate = promotion.Gate(),
          reason: str = "", dry_run: bool = False) -> tuple[Rollout, str]:
    """Point ``alias`` at ``version`` for the first share of its devices; the others keep the version it replaces.

    A rollout already running behind the alias is replaced (the history says so): of the same version, it starts
    over at the first step (devices that took the version keep it); of another, its fallback stays the fallback.
    """
    version = contract.check_version_number(version)
    checked = promotion.check_gate(client, name, version, gate)
    refused = promotion.guard_rolled_back(client, name, version)
    if refused:
        raise GateRefused(f"the guard rolled v{version} back {refused}; to give it to devices again say "
                          f"edgeq promote {name} {version} --alias {alias} --override-guard")
    if not dry_run:
        alias_history.notice(client, name, "edgeq rollout")
    current = promotion.current_version(client, name, alias)
    earlier = read(client, name, alias)
    running = earlier if earlier and earlier.status not in ENDED and earlier.version == current else None
    if current is None:
        raise RegistryToolError(f"alias {alias!r} of {name!r} points at no version: there is nothing to fall back to; "
                                f"give it a first version with edgeq promote {name} VERSION --alias {alias}")
    if current == version and running is None:
        raise RegistryToolError(f"v{version} is already behind {alias} for every device; nothing to roll out")
    fallback = running.fallback if running else current
    by = getpass.getuser()
    now = promotion.now_iso()
    rollout = Rollout(alias, version, fallback, plan, 0, now, RUNNING, by, now)
    replaced = (f"; replaces the rollout of v{running.version} at {running.share:g} % (started by {running.started_by})"
                if running else "")
    why = (f"staged rollout {','.join(f'{s:g}' for s in plan.steps)} %: {rollout.describe_stage()}, the others keep "
           f"v{fallback}{replaced}; {reason + '; ' if reason else ''}{checked}")
    if dry_run:
        return rollout, f"dry run: would start: {why}"
    share = Share(plan.steps[0], fallback)
    if current == version:  # the same version started over: only its share and the stage change
        client.set_model_version_tag(name, version, contract.rollout_tag(alias), share.encode())
        state.save(client, name, rollout)
        _event(client, name, rollout, why)
        return rollout, why
    event = alias_history.new_event(alias_history.PROMOTE, alias, current, version, why)
    try:
        promotion._point_alias(client, name, alias, version, current, share=share)
    except promotion.AliasRaced:
        alias_history.notice(client, name, "edgeq rollout (raced)")
        raise
    state.save(client, name, rollout)
    alias_history.record(client, name, event)
    return rollout, why


# -- one step on a timer ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Step:
    rollout: Rollout | None
    decision: str  # ADVANCE, judge.KEEP (complete), judge.HOLD, judge.ROLL_BACK, or "" (nothing to do)
    message: str
    verdict: judge.Verdict | None = None
    moved: bool = False
    raced: bool = False

    @property
    def exit_code(self) -> contract.ExitCode:
        if self.raced:
            return contract.ExitCode.RACED
        if self.decision == judge.HOLD:
            return contract.ExitCode.HELD
        if self.decision == judge.ROLL_BACK:
            return contract.ExitCode.REJECTED
        return contract.ExitCode.OK

    @property
    def ended(self) -> bool:
        return self.rollout is None or self.rollout.status in ENDED


def step(client: RegistryApi, name: str, alias: str, accept_unsigned: bool = False, dry_run: bool = False,
         now_ms: int | None = None) -> Step:
    """Judge the current stage and advance, hold or roll back (the module's rules)."""
    rollout = read(client, name, alias)
    if rollout is None:
        return Step(None, "", f"no staged rollout behind {alias} of {name}: start one with edgeq rollout start")
    if rollout.status in ENDED:
        return Step(rollout, "", f"the rollout of v{rollout.version} behind {alias} ended ({rollout.status}"
                                 f"{': ' + rollout.note if rollout.note else ''}); nothing to do")
    if not dry_run:
        alias_history.notice(client, name, "edgeq rollout")
    current = promotion.current_version(client, name, alias)
    if current != rollout.version:
        return _end_replaced(client, name, rollout, current, dry_run)
    if rollout.status == PAUSED:
        return Step(rollout, "", f"the rollout of v{rollout.version} is paused at {rollout.describe_stage()} "
                                 f"({rollout.note}); edgeq rollout resume {name} --alias {alias} goes on")
    now = now_ms if now_ms is not None else judge.clock_ms()
    verdict = _judge_stage(client, name, rollout, accept_unsigned, now)
    if verdict.outcome == judge.ROLL_BACK:
        return _roll_back(client, name, rollout, verdict, dry_run)
    if verdict.outcome == judge.HOLD:
        return Step(rollout, judge.HOLD, f"hold at {rollout.describe_stage()}: {verdict.reason}; nothing moved", verdict)
    age_s = (now - rollout.stage_since_ms) / 1000
    if age_s < rollout.plan.min_stage_s:
        left = rollout.plan.min_stage_s - age_s
        return Step(rollout, judge.HOLD, f"hold at {rollout.describe_stage()}: the judge says keep ({verdict.reason}) "
                                         f"but the stage is {duration(age_s)} old; it may advance in {duration(left)} "
                                         "(--min-stage-time); nothing moved", verdict)
    return _advance(client, name, rollout, verdict, dry_run)


def duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600:
        return f"{seconds // 3600} h {seconds % 3600 // 60} min"
    return f"{seconds // 60} min {seconds % 60} s" if seconds >= 60 else f"{seconds} s"


def _still_at(client: RegistryApi, name: str, rollout: Rollout) -> None:
    current = promotion.current_version(client, name, rollout.alias)
    if current != rollout.version:
        raise promotion.AliasRaced(f"alias {rollout.alias!r} of {name!r} moved to v{current} meanwhile; the rollout "
                                   "did not change anything")


def _advance(client: RegistryApi, name: str, rollout: Rollout, verdict: judge.Verdict, dry_run: bool) -> Step:
    nxt = replace(rollout, stage=rollout.stage + 1, stage_since=promotion.now_iso())
    last = nxt.stage == len(rollout.plan.steps) - 1
    what = (f"every device takes v{rollout.version}: rollout complete" if last else
            f"{nxt.describe_stage()} begins: {nxt.share:g} % of the devices take v{rollout.version}")
    message = f"{rollout.describe_stage()} passed ({verdict.reason}); {what}"
    if dry_run:
        return Step(rollout, ADVANCE if not last else judge.KEEP, f"dry run: would advance: {message}", verdict)
    try:
        _still_at(client, name, rollout)
    except promotion.AliasRaced as exc:
        return Step(rollout, judge.HOLD, str(exc), verdict, raced=True)
    tag = contract.rollout_tag(rollout.alias)
    if last:
        client.delete_model_version_tag(name, rollout.version, tag)
        nxt = replace(nxt, status=COMPLETE, note=f"complete at {nxt.stage_since}")
    else:
        client.set_model_version_tag(name, rollout.version, tag, Share(nxt.share, rollout.fallback).encode())
    state.save(client, name, nxt)
    _event(client, name, nxt, f"{message}; {verdict.summary(110)}", by=contract.ROLLOUT_BY)
    return Step(nxt, ADVANCE if not last else judge.KEEP, message, verdict, moved=True)


def _roll_back(client: RegistryApi, name: str, rollout: Rollout, verdict: judge.Verdict, dry_run: bool) -> Step:
    message = (f"{rollout.describe_stage()} failed: {verdict.reason}; {rollout.alias} goes back to v{rollout.fallback} "
               "for every device")
    if dry_run:
        return Step(rollout, judge.ROLL_BACK, f"dry run: would roll back: {message}", verdict)
    why = f"{contract.ROLLOUT_BY}: {verdict.summary(110)}"
    event = alias_history.new_event(alias_history.ROLLBACK, rollout.alias, rollout.version, rollout.fallback,
                                    why, by=contract.ROLLOUT_BY)
    try:
        promotion._point_alias(client, name, rollout.alias, rollout.fallback, rollout.version, contract.ROLLOUT_BY,
                               new_window=False)
    except promotion.AliasRaced as exc:
        alias_history.notice(client, name, "edgeq rollout (raced)")
        return Step(rollout, judge.HOLD, f"not rolled back: {exc}", verdict, raced=True)
    alias_history.record(client, name, event)
    ended = replace(rollout, status=ROLLED_BACK, note=f"rolled back to v{rollout.fallback} at {promotion.now_iso()}")
    state.save(client, name, ended)
    _mark_refused(client, name, rollout, verdict)
    return Step(ended, judge.ROLL_BACK, message, verdict, moved=True)


def _mark_refused(client: RegistryApi, name: str, rollout: Rollout, verdict: judge.Verdict) -> None:
    """As the guard marks a version it rolled back (its run and its model version), so a plain promote of it is
    refused until a person overrides; and the version's share goes."""
    guard.mark_rolled_back(client, name, verdict, rollout.fallback, f"{contract.ROLLOUT_BY}: {verdict.summary()}")
    client.delete_model_version_tag(name, rollout.version, contract.rollout_tag(rollout.alias))


def _end_replaced(client: RegistryApi, name: str, rollout: Rollout, current: str | None, dry_run: bool) -> Step:
    events = [e for e in alias_history.read(client, name, rollout.alias) if e.to_version == (current or "")]
    how = f"{events[-1].kind} by {events[-1].by}" if events else "a move edgeq did not see"
    if dry_run:
        return Step(rollout, "", f"dry run: the rollout of v{rollout.version} would end: {rollout.alias} moved to "
                                 f"v{current or '(none)'} ({how})")
    ended = state.end_replaced(client, name, rollout, current or "(none)", how)
    alias_history.record(client, name, alias_history.new_event(
        alias_history.ROLLOUT, rollout.alias, current, current or "",
        f"the staged rollout of v{rollout.version} ended: {ended.note}", by=contract.ROLLOUT_BY))
    return Step(ended, "", f"the rollout of v{rollout.version} ended: {ended.note}")


# -- pause and resume -------------------------------------------------------------------------------------------------

def pause(client: RegistryApi, name: str, alias: str, reason: str = "") -> Rollout:
    rollout = _running(client, name, alias)
    if rollout.status == PAUSED:
        raise RegistryToolError(f"the rollout of v{rollout.version} is already paused ({rollout.note})")
    who = f"paused by {getpass.getuser()} at {promotion.now_iso()}" + (f": {reason}" if reason else "")
    paused = replace(rollout, status=PAUSED, note=who)
    state.save(client, name, paused)
    _event(client, name, paused, f"{paused.describe_stage()} {who}; devices keep what they run, the share stays "
                                 f"{paused.share:g} %")
    return paused


def resume(client: RegistryApi, name: str, alias: str, reason: str = "") -> Rollout:
    rollout = _running(client, name, alias)
    if rollout.status != PAUSED:
        raise RegistryToolError(f"the rollout of v{rollout.version} is not paused (it is {rollout.status})")
    resumed = replace(rollout, status=RUNNING, note="")
    state.save(client, name, resumed)
    _event(client, name, resumed, f"{resumed.describe_stage()} resumed by {getpass.getuser()}"
                                  + (f": {reason}" if reason else "") + f" (it was {rollout.note})")
    return resumed


def _running(client: RegistryApi, name: str, alias: str) -> Rollout:
    rollout = read(client, name, alias)
    if rollout is None or rollout.status in ENDED:
        raise RegistryToolError(f"no staged rollout is running behind {alias} of {name}"
                                + (f" (the last one {rollout.status})" if rollout else ""))
    return rollout


# -- status -----------------------------------------------------------------------------------------------------------

def status(client: RegistryApi, name: str, alias: str, accept_unsigned: bool = False, now_ms: int | None = None
           ) -> tuple[Rollout | None, judge.Verdict | None]:
    """The rollout and, while it runs, the judge's verdict on its current stage (nothing written)."""
    rollout = read(client, name, alias)
    if rollout is None or rollout.status in ENDED:
        return rollout, None
    if promotion.current_version(client, name, alias) != rollout.version:
        return rollout, None
    return rollout, _judge_stage(client, name, rollout, accept_unsigned, now_ms)


def _judge_stage(client: RegistryApi, name: str, rollout: Rollout, accept_unsigned: bool, now_ms: int | None
                 ) -> judge.Verdict:
    """The judge on the current stage's window: reports on the version since the stage began, the fallback paired."""
    return judge.evaluate(client, name, rollout.alias, rollout.plan.limits,
                          evidence.trust_for(client, name, accept_unsigned), rollout.fallback, now_ms,
                          stage=(f"{rollout.describe_stage()} began at {rollout.stage_since}", rollout.stage_since_ms))
