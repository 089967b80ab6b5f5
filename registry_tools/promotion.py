"""Promote a version behind an alias (with an accuracy and runtime gate), pick the best, roll back.

The alias is the mechanism devices follow. Every move is an event in the alias history
(registry_tools.history), which is also what rollback walks back along. Where the
server still supports stages, the ``Production`` stage is set too.
"""
from __future__ import annotations

import getpass
import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone

from edge import contract
from edge.rollout_share import Share
from edge.runtime import parse_version
from registry_tools.api import RegistryApi
from registry_tools import history as alias_history
from registry_tools import rollout_state as rollout
from registry_tools.rest_client import error_code
from registry_tools.lookup import GateRefused, RegistryToolError, model_version, registered_model
from registry_tools.versions import VersionRow, collect


@dataclass(frozen=True)
class Gate:
    max_accuracy_drop: float = 1.0
    runtime_version: str | None = None
    force: bool = False


@dataclass(frozen=True)
class Promotion:
    name: str
    alias: str
    version: str
    previous: str | None
    stage_set: bool


_LEGACY_SEP = "→"
_LEGACY_BY = "earlier edgeq"
_LEGACY_REASON = "from the rollback list an earlier edgeq kept in tag {tag}; when and why were not recorded"


def _legacy_stack(tags: dict[str, str], alias: str) -> list[str]:
    """The versions ``alias`` pointed to, oldest first, from the tag earlier edgeq versions kept ("v1 → v2 → v3",
    or a JSON list before that); [] when there is none."""
    raw = tags.get(contract.alias_history_tag(alias))
    if not raw:
        return []
    if raw.lstrip().startswith("["):
        try:
            return [str(e["version"]) for e in json.loads(raw)]
        except (ValueError, KeyError, TypeError):
            return []
    versions = [part.strip().removeprefix("v") for part in raw.split(_LEGACY_SEP)]
    return [v for v in versions if contract.VERSION_RE.fullmatch(v)]


def _walk(events: list[alias_history.Event]) -> list[str]:
    """The versions an alias pointed to, oldest first, that rollback walks back along: every move pushes the
    version it went to, a rollback pops the versions it left. A step that leaves the alias where it was (a staged
    rollout's stage, "v7 → v7") is no version to go back to."""
    stack: list[str] = []
    for e in events:
        if e.from_version == (e.to_version or None):
            continue
        if e.kind == alias_history.ROLLBACK:
            while stack and stack[-1] == e.from_version:
                stack.pop()
        elif e.from_version and (not stack or stack[-1] != e.from_version):
            stack.append(e.from_version)  # the alias was set where no recorded event put it
        if e.to_version and (not stack or stack[-1] != e.to_version):
            stack.append(e.to_version)
    return stack


def _missing_from_log(legacy: list[str], walked: list[str]) -> list[str]:
    """The oldest part of the legacy list the event log does not reach back to, up to the first version they share.

    Earlier edgeq versions wrote the list and the log together, so the log's walk continues the list where they
    overlap; what the list has before that overlap fell out of the log (or predates it)."""
    if any(walked[i:i + len(legacy)] == legacy for i in range(len(walked) - len(legacy) + 1)):
        return []  # the log reaches further back than the list
    for k in range(min(len(legacy), len(walked)), 0, -1):
        if legacy[-k:] == walked[:k]:
            return legacy[:len(legacy) - k + 1]  # with the first shared version: the history then reads as one chain of moves
    return legacy


def _legacy_events(alias: str, missing: list[str]) -> list[alias_history.Event]:
    reason = _LEGACY_REASON.format(tag=contract.alias_history_tag(alias))
    return [alias_history.Event(alias_history.PROMOTE, alias, before, version, _LEGACY_BY, "", False, reason)
            for before, version in zip([None, *missing], missing)]


def _versions_before(client: RegistryApi, name: str, alias: str) -> list[str]:
    """What rollback walks back along: the alias history's moves of ``alias``, after what the legacy list still
    adds (read here until the next move of the alias writes it into the history)."""
    events = alias_history.read(client, name, alias)
    legacy = _legacy_stack(registered_model(client, name).tags or {}, alias)
    walked = _walk(events)
    if not legacy:
        return walked
    return _walk(_legacy_events(alias, _missing_from_log(legacy, walked)) + events)


def _migrate(client: RegistryApi, name: str, alias: str) -> None:
    """Write the legacy rollback list of ``alias`` into the alias history, once, and drop its tag."""
    tags = registered_model(client, name).tags or {}
    if contract.alias_history_tag(alias) not in tags:
        return
    missing = _missing_from_log(_legacy_stack(tags, alias), _walk(alias_history.read(client, name, alias)))
    if missing:
        alias_history.record_earlier(client, name, _legacy_events(alias, missing))
    client.delete_registered_model_tag(name, contract.alias_history_tag(alias))


def current_version(client: RegistryApi, name: str, alias: str) -> str | None:
    version = (registered_model(client, name).aliases or {}).get(alias)
    return str(version) if version is not None else None


def check_gate(client: RegistryApi, name: str, version: str, gate: Gate) -> str:
    """Raise GateRefused when the version may not be promoted under ``gate``; else say what it checked."""
    registered_model(client, name)
    mv = model_version(client, name, version)
    if mv.tags.get(contract.TAG_FORMAT) != contract.FORMAT_TFLITE:
        raise GateRefused(f"version {version} is the {mv.tags.get(contract.TAG_VARIANT, '?')} (not a .tflite): devices cannot run it")
    if gate.force:
        return "forced past the accuracy and runtime gate"
    drop = client.get_run(mv.run_id).data.metrics.get(contract.M_DROP)
    if drop is None:
        raise GateRefused(f"version {version} has no {contract.M_DROP} metric; use --force to promote it anyway")
    if drop > gate.max_accuracy_drop:
        raise GateRefused(
            f"version {version} loses {drop:.2f} accuracy points (limit {gate.max_accuracy_drop:.2f}); "
            "raise --max-accuracy-drop or use --force"
        )
    needed = mv.tags.get(contract.TAG_MIN_RUNTIME)
    if gate.runtime_version and needed and parse_version(needed) > parse_version(gate.runtime_version):
        raise GateRefused(
            f"version {version} needs TFLite runtime {needed}, devices have {gate.runtime_version}; use --force to promote anyway"
        )
    runtime_note = f", needs runtime {needed} ≤ {gate.runtime_version}" if gate.runtime_version and needed else ""
    return f"gate passed: drop {drop:+.2f} points ≤ {gate.max_accuracy_drop:.2f}{runtime_note}"


def _set_stage(client: RegistryApi, name: str, version: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            client.transition_model_version_stage(name, version, contract.STAGE_PRODUCTION, archive_existing_versions=True)
            return True
        except Exception as exc:  # a registry without stages (MlflowException or rest_client.ApiError)
            if error_code(exc) is None and not isinstance(exc, (AttributeError, NotImplementedError)):
                raise
            return False


class AliasRaced(RegistryToolError):
    """Another move of the alias came between edgeq's read and its write: edgeq did not overwrite it."""

    def __init__(self, message: str, moved: bool = False):
        super().__init__(message)
        self.moved = moved  # edgeq's own write landed, and another move came right after it


def now_iso() -> str:
    """When an alias moves: the start of its version's evidence window (milliseconds, UTC)."""
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _v(version: str | None) -> str:
    return f"v{version}" if version else "unset"


def _point_alias(client: RegistryApi, name: str, alias: str, version: str, expected: str | None, by: str | None = None,
                 retry: str = "", new_window: bool = True, share: Share | None = None) -> bool:
    """Move ``alias`` from ``expected`` to ``version`` unless someone moved it meanwhile (AliasRaced, nothing written).

    MLflow has no compare-and-set: the alias is read right before and right after the write. A promotion to another
    version starts a new evidence window: ``contract.alias_since_tag(alias)`` on the version, written before the
    alias moves so that every device that resolves the alias to it signs the new window into its reports. A
    rollback (``new_window=False``) returns the version to the window it had: the reports its devices made while
    the alias pointed at it before still hold, and those devices do not report a version they already run.
    ``share`` (a staged rollout) limits which devices take the version; any other move removes a share it carried.
    """
    current = current_version(client, name, alias)
    if current != expected:
        raise AliasRaced(f"alias {alias!r} of {name!r} moved to {_v(current)} meanwhile (expected {_v(expected)}); "
                         "nothing changed: look at edgeq history and decide again")
    _migrate(client, name, alias)  # before the move is recorded: the legacy list is older than it
    now = now_iso()
    target_tags = model_version(client, name, version).tags or {}
    if share is not None:  # written before the alias moves: no device sees the version without its share
        client.set_model_version_tag(name, version, contract.rollout_tag(alias), share.encode())
    elif contract.rollout_tag(alias) in target_tags:  # any other move gives the version to every device
        client.delete_model_version_tag(name, version, contract.rollout_tag(alias))
    since_key = contract.alias_since_tag(alias)
    if (current != str(version) and (new_window or not target_tags.get(since_key))) or retry:
        client.set_model_version_tag(name, version, since_key, now)
    if retry:
        client.set_model_version_tag(name, version, contract.TAG_RETRY, retry)
    client.set_registered_model_alias(name, alias, version)
    after = current_version(client, name, alias)
    if after != str(version):
        raise AliasRaced(f"alias {alias!r} of {name!r} was moved to {_v(after)} right after edgeq moved it to "
                         f"{_v(version)}; edgeq did not move it again: look at edgeq history and decide", moved=True)
    client.set_model_version_tag(name, version, contract.TAG_PROMOTED_BY, by or getpass.getuser())
    client.set_model_version_tag(name, version, contract.TAG_PROMOTED_AT, now)
    return _set_stage(client, name, version) if alias == contract.DEFAULT_ALIAS else False


def _raced(client: RegistryApi, name: str, exc: AliasRaced, event: alias_history.Event, noticed_by: str) -> None:
    """Record what actually happened: edgeq's own move when it landed, then the move that raced it."""
    if exc.moved:
        alias_history.record(client, name, event)
    alias_history.notice(client, name, f"{noticed_by} (raced)")


def guard_rolled_back(client: RegistryApi, name: str, version: str) -> str:
    """The guard's reason when it rolled ``version`` back and no person has overridden it since, else ""."""
    tags = model_version(client, name, version).tags or {}
    if tags.get(contract.TAG_GUARD_VERDICT) != contract.GUARD_ROLLED_BACK:
        return ""
    return f"on {tags.get(contract.TAG_GUARD_AT, '?')}: {tags.get(contract.TAG_GUARD_REASON, '')[:200]}"


def promote(client: RegistryApi, name: str, version: str, alias: str, gate: Gate, reason: str = "",
            override_guard: bool = False) -> Promotion:
    """``reason`` (e.g. the canary evidence) goes into the alias history together with the gate's summary.

    A version the guard rolled back moves again only with ``override_guard``: a person's decision, recorded as an
    override, that starts a new evidence window and asks devices that refused it to try it once more.
    """
    checked = check_gate(client, name, version, gate)
    refused = guard_rolled_back(client, name, version)
    if refused and not override_guard:
        raise GateRefused(f"the guard rolled v{version} back {refused}; to promote it again say --override-guard "
                          "(a new evidence window starts; devices that refused it retry it once)")
    alias_history.notice(client, name, "edgeq promote")  # moves made outside edgeq go in first, in order
    previous = current_version(client, name, alias)
    kind = alias_history.OVERRIDE if override_guard else alias_history.PROMOTE
    staged = rollout.running_behind(client, name, alias, version)
    why = "; ".join(part for part in (reason, f"overrides the guard's rollback {refused}" if refused else "",
                                      rollout.replaced_words(staged) if staged else "", checked) if part)
    event = alias_history.new_event(kind, alias, previous, version, why, gate.force)
    retry = f"{getpass.getuser()}@{now_iso()}" if override_guard else ""
    try:
        stage = _point_alias(client, name, alias, version, previous, retry=retry)
    except AliasRaced as exc:
        _raced(client, name, exc, event, "edgeq promote")
        raise
    alias_history.record(client, name, event)
    if staged:
        rollout.end_replaced(client, name, staged, version, kind)
    if refused:
        client.set_model_version_tag(name, version, contract.TAG_GUARD_VERDICT, contract.GUARD_OVERRIDDEN)
    return Promotion(name, alias, version, previous, stage)


def rollback_target(client: RegistryApi, name: str, alias: str) -> tuple[str, str]:
    """(current version, the version it replaced) of ``alias``: what ``rollback`` would do, without doing it."""
    current = current_version(client, name, alias)
    if current is None:
        raise RegistryToolError(f"model {name!r} has no alias {alias!r} to roll back")
    versions = _versions_before(client, name, alias)
    while versions and versions[-1] == current:
        versions.pop()
    if not versions:
        raise RegistryToolError(f"alias {alias!r} of {name!r} has no earlier version to roll back to")
    return current, versions[-1]


def rollback(client: RegistryApi, name: str, alias: str, reason: str = "", by: str | None = None,
             expected_current: str | None = None) -> Promotion:
    """Move ``alias`` back to the version it replaced; ``by`` goes into the history (default: the user).

    With ``expected_current``, refuse (AliasRaced) when the alias has moved meanwhile.
    """
    alias_history.notice(client, name, by or "edgeq rollback")
    current, target = rollback_target(client, name, alias)
    if expected_current is not None and current != str(expected_current):
        raise AliasRaced(f"alias {alias!r} of {name!r} moved to v{current} meanwhile (expected v{expected_current}); "
                         "nothing changed")
    model_version(client, name, target)
    staged = rollout.running_behind(client, name, alias, target)
    why = "; ".join(part for part in (reason or f"rolled back from v{current} to the version before it",
                                      rollout.replaced_words(staged) if staged else "") if part)
    event = alias_history.new_event(alias_history.ROLLBACK, alias, current, target, why, by=by)
    try:
        stage = _point_alias(client, name, alias, target, current, by, new_window=False)
    except AliasRaced as exc:
        _raced(client, name, exc, event, by or "edgeq rollback")
        raise
    alias_history.record(client, name, event)
    if staged:
        rollout.end_replaced(client, name, staged, target, f"rollback by {by or getpass.getuser()}")
    return Promotion(name, alias, target, current, stage)


@dataclass(frozen=True)
class Choice:
    row: VersionRow
    reason: str


def best_for_device(client: RegistryApi, name: str, device: str, max_accuracy_drop: float,
                    accept_unsigned: bool = False) -> Choice:
    device = contract.sanitize_device_id(device)
    rows = collect(client, name, devices=[device], accept_unsigned=accept_unsigned)  # its verified figures
    measured = [r for r in rows if device in r.device_p50_ms and r.format == contract.FORMAT_TFLITE]
    if not measured:
        known = sorted({d for r in collect(client, name, devices=True, accept_unsigned=accept_unsigned)
                        for d in r.device_p50_ms})
        raise RegistryToolError(
            f"no figures from device {device!r} for {name!r}"
            + (f" (devices with figures: {', '.join(known)})" if known else " (no device has reported yet: run edgeq-pull there)")
        )
    eligible = [r for r in measured if r.drop_points is not None and r.drop_points <= max_accuracy_drop]
    if not eligible:
        raise GateRefused(f"none of the {len(measured)} versions measured on {device} is within {max_accuracy_drop:.2f} accuracy points")
    best = min(eligible, key=lambda r: r.device_p50_ms[device])
    others = ", ".join(f"v{r.version} {r.variant} {r.device_p50_ms[device]:.2f} ms" for r in measured if r is not best)
    reason = (
        f"v{best.version} ({best.variant}) is the fastest on {device} at {best.device_p50_ms[device]:.2f} ms p50 "
        f"with a drop of {best.drop_points:+.2f} points (budget {max_accuracy_drop:.2f}); "
        f"{len(measured)} measured{': ' + others if others else ''}"
    )
    return Choice(best, reason)
