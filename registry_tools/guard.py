"""``edgeq guard``: act on the judge's verdict (registry_tools/judge.py) on the version behind an alias.

The judge says keep, roll back or hold on the whole evidence window of the version V behind the alias. The guard:

1. never judges an alias it rolled back itself within the cooldown (the alias still at the version it restored);
2. rolls back only a breach that persists: over ``consecutive`` evaluations in a row of the same window, or carried
   by at least ``fresh_reports`` reports against that are newer than the previous evaluation; a first breach
   is a hold that says so. What it needs between evaluations is a registered-model tag per alias
   (``contract.guard_state_tag``), written only by the guard (an operator's account);
3. moves the alias back to the version it replaced (the stack ``edgeq rollback`` uses) only if nobody moved it
   meanwhile (promotion.AliasRaced: nothing overwritten, exit 8, the history records what happened);
4. never moves an alias further back than a version it restored itself: a breach there is left for a person;
5. records each rollback in the alias history (by "guard", why: the figures) and on V's run and model version.
A hold never moves an alias. A person's ``edgeq promote V --override-guard`` starts a new window: the guard
judges only evidence newer than it.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone

from edge import contract
from registry_tools.api import RegistryApi
from registry_tools import evidence, judge, promotion
from registry_tools import history as alias_history
from registry_tools.lookup import RegistryToolError, registered_model
from registry_tools.rest_client import tag


_RUN_TAG_CHARS = 4000
TABLE_LATEST = "guard/latest.txt"  # on V's run: the table of the newest verdict on it; a rollback's is kept beside it
_HISTORY_DEVICE_CHARS = 110  # of the reason kept on the version's run and model version

@dataclass(frozen=True)
class Policy:
    """How the guard turns verdicts into moves: persistence and cooldown."""

    consecutive: int = contract.DEFAULT_GUARD_CONSECUTIVE
    fresh_reports: int = contract.DEFAULT_GUARD_MIN_DEVICES
    cooldown_s: float = contract.DEFAULT_GUARD_COOLDOWN_S

    def __post_init__(self) -> None:
        if self.consecutive < 1:
            raise ValueError(f"--consecutive must be 1 or more, got {self.consecutive}")
        if self.fresh_reports < 1:
            raise ValueError(f"--fresh-reports must be 1 or more, got {self.fresh_reports}")
        if self.cooldown_s < 0:
            raise ValueError(f"--cooldown must be 0 or more seconds, got {self.cooldown_s:g}")


@dataclass(frozen=True)
class State:
    """What the guard remembers about one alias between evaluations."""

    version: str = ""
    since: str = ""  # the window the breaches were counted in
    breaches: int = 0  # consecutive evaluations of that window that breached
    last_eval_ms: int = 0
    last_rollback_ms: int = 0
    restored: str = ""  # the version the guard's last rollback restored


def read_state(client: RegistryApi, name: str, alias: str) -> State:
    raw = (registered_model(client, name).tags or {}).get(contract.guard_state_tag(alias), "")
    try:
        data = json.loads(raw) if raw else {}
        return State(**{k: type(getattr(State, k))(v) for k, v in data.items() if k in State.__dataclass_fields__})
    except (ValueError, TypeError):
        return State()  # a tag someone edited into another shape: start counting again


def _write_state(client: RegistryApi, name: str, alias: str, state: State) -> None:
    client.set_registered_model_tag(name, contract.guard_state_tag(alias), json.dumps(asdict(state), sort_keys=True))


@dataclass(frozen=True)
class Outcome:
    verdict: judge.Verdict
    decision: str  # judge.KEEP, ROLL_BACK or HOLD, after persistence and cooldown
    moved: bool
    message: str  # what was done, one line
    noticed: tuple[alias_history.Event, ...] = ()  # alias moves made outside edgeq, found on the way
    raced: bool = False
    notes: tuple[str, ...] = ()

    @property
    def exit_code(self) -> contract.ExitCode:
        if self.raced:
            return contract.ExitCode.RACED
        return {judge.KEEP: contract.ExitCode.OK, judge.HOLD: contract.ExitCode.HELD}.get(self.decision,
                                                                                          contract.ExitCode.REJECTED)


def _restored_by_guard(client: RegistryApi, name: str, alias: str, version: str) -> bool:
    events = alias_history.read(client, name, alias)
    last = events[-1] if events else None
    return bool(last and last.kind == alias_history.ROLLBACK and last.by == contract.GUARD_BY and last.to_version == version)


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="seconds")


def guard(client: RegistryApi, name: str, alias: str, limits: judge.Limits, policy: Policy = Policy(),
          dry_run: bool = False, accept_unsigned: bool = False, now_ms: int | None = None) -> Outcome:
    """Judge the version behind ``alias`` and act on the verdict (rules 1–5)."""
    if dry_run:  # writes nothing, not even the moves it notices
        noticed = tuple(e for e in alias_history.read(client, name) if e.kind == alias_history.OUTSIDE and not e.at)
    else:
        noticed = tuple(alias_history.notice(client, name, "edgeq guard"))
    now = now_ms if now_ms is not None else judge.clock_ms()
    trust = evidence.trust_for(client, name, accept_unsigned)
    try:
        _, replaced = promotion.rollback_target(client, name, alias)
    except RegistryToolError:
        replaced = None
    verdict = judge.evaluate(client, name, alias, limits, trust, replaced, now)  # unknown model or alias: bad input
    state = read_state(client, name, alias)
    decision, message, state = _persist(verdict, state, policy, now)
    outcome = Outcome(verdict, decision, False, message, noticed)
    if decision == judge.ROLL_BACK:
        outcome = _roll_back(client, name, alias, verdict, replaced, dry_run, outcome)
        if outcome.moved:
            state = replace(state, breaches=0, last_rollback_ms=now, restored=verdict.replaced or "")
    if not dry_run:
        _write_state(client, name, alias, state)
        note = _write_table(client, verdict, outcome)
        if note:
            outcome = replace(outcome, notes=outcome.notes + (note,))
    return outcome


def _write_table(client: RegistryApi, verdict: judge.Verdict, outcome: Outcome) -> str:
    """The per-device table as an artifact on V's run, so its MLflow page answers "why?"; a note when it cannot."""
    if not verdict.run_id or not hasattr(client, "log_text"):
        return ""
    text = f"{_iso(verdict.now_ms)} edgeq guard: {outcome.message}\n{judge.table(verdict)}\n"
    paths = [TABLE_LATEST] + ([f"guard/rollback-{_iso(verdict.now_ms).replace(':', '')}.txt"] if outcome.moved else [])
    try:
        for path in paths:
            client.log_text(verdict.run_id, text, path)
    except Exception as exc:  # the artifact store's own error types (mlflow's, REST, cloud SDKs): the verdict stands
        return f"the table was not written to v{verdict.version}'s run: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
    return ""


def _persist(verdict: judge.Verdict, state: State, policy: Policy, now: int) -> tuple[str, str, State]:
    """Rules 1 and 2: (decision, message, the state to keep)."""
    same_window = state.version == verdict.version and state.since == verdict.window.since
    cooling = state.restored == verdict.version and now - state.last_rollback_ms < policy.cooldown_s * 1000
    if cooling:
        until = _iso(state.last_rollback_ms + int(policy.cooldown_s * 1000))
        return judge.HOLD, (f"hold: the guard restored v{verdict.version} at {_iso(state.last_rollback_ms)}; "
                            f"it judges {verdict.alias} again after {until} (--cooldown); nothing moved"), \
            replace(state, last_eval_ms=now)
    breaches = (state.breaches if same_window else 0) + 1 if verdict.outcome == judge.ROLL_BACK else 0
    kept = State(verdict.version, verdict.window.since, breaches, now, state.last_rollback_ms, state.restored)
    if verdict.outcome == judge.KEEP:
        return judge.KEEP, f"v{verdict.version} stays: {verdict.reason}", kept
    if verdict.outcome == judge.HOLD:
        return judge.HOLD, f"hold: {verdict.reason}; nothing moved", kept
    since = state.last_eval_ms if same_window else 0
    fresh = sum(1 for v in verdict.carrying if v.at_ms is None or v.at_ms > since)
    if breaches >= policy.consecutive or fresh >= policy.fresh_reports:
        return judge.ROLL_BACK, verdict.reason, kept
    return judge.HOLD, (f"hold: breach {breaches} of {policy.consecutive} consecutive ({verdict.reason}), carried by "
                        f"{fresh} report(s) newer than the last evaluation, {policy.fresh_reports} needed to act "
                        "at once; rolls back if it persists; nothing moved"), kept


def _roll_back(client: RegistryApi, name: str, alias: str, verdict: judge.Verdict, replaced: str | None, dry_run: bool,
               outcome: Outcome) -> Outcome:
    version = verdict.version
    if _restored_by_guard(client, name, alias, version):
        return replace(outcome, message=f"v{version} was restored by the guard itself; not moving {alias} further back: "
                                        "a person decides (edgeq promote / edgeq rollback)")
    if replaced is None:
        return replace(outcome, message=f"{alias} has no earlier version to go back to; nothing changed")
    if dry_run:
        return replace(outcome, message=f"dry run: would move {alias} from v{version} back to v{replaced}: {verdict.reason}")
    # The history keeps every device's figures short enough that all of them fit; the version's run keeps them whole.
    why = f"{contract.GUARD_BY}: {verdict.summary(_HISTORY_DEVICE_CHARS)}"
    try:
        result = promotion.rollback(client, name, alias, why, by=contract.GUARD_BY, expected_current=version)
    except promotion.AliasRaced as exc:
        return replace(outcome, raced=True, message=f"not rolled back: {exc}")
    mark_rolled_back(client, name, verdict, result.version, f"{contract.GUARD_BY}: {verdict.summary()}")
    return replace(outcome, moved=True, message=f"{alias} moved from v{version} back to v{result.version}: {verdict.reason}")


def mark_rolled_back(client: RegistryApi, name: str, verdict: judge.Verdict, restored: str, why: str) -> None:
    """Say on the refused version's run and model version what the guard did and on which figures."""
    tags = {
        contract.TAG_GUARD_VERDICT: contract.GUARD_ROLLED_BACK,
        contract.TAG_GUARD_REASON: why if len(why) <= _RUN_TAG_CHARS else why[: _RUN_TAG_CHARS - 1] + "…",
        contract.TAG_GUARD_AT: datetime.now(timezone.utc).isoformat(timespec="seconds"),
        contract.TAG_GUARD_RESTORED: str(restored),
    }
    if verdict.run_id:
        client.log_batch(verdict.run_id, tags=[tag(client, key, value) for key, value in tags.items()])
    for key, value in tags.items():
        client.set_model_version_tag(name, verdict.version, key, value)
