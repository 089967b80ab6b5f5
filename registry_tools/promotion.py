"""Promote a version behind an alias (with an accuracy and runtime gate), pick the best, roll back.

The alias is the mechanism devices follow. Each promotion is appended to a history
kept as a registered-model tag, which is what rollback walks back along. Where the
server still supports stages, the ``Production`` stage is set too.
"""
from __future__ import annotations

import getpass
import json
import warnings
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from edge import contract
from edge.rollout_share import Share
from edge.runtime import parse_version
from registry_tools import history as alias_history
from registry_tools.rest_client import error_code
from registry_tools.lookup import GateRefused, RegistryToolError, model_version, registered_model
from registry_tools.versions import VersionRow, collect

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

_HISTORY_KEEP = 30


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


_STACK_SEP = " → "


def history(client: MlflowClient, name: str, alias: str) -> list[dict]:
    """The versions ``alias`` pointed to, oldest first, as ``{"version": ...}``: what rollback walks back along."""
    raw = registered_model(client, name).tags.get(contract.alias_history_tag(alias))
    if not raw:
        return []
    if raw.lstrip().startswith("["):  # the JSON list older edgeq versions wrote
        try:
            return [{"version": str(e["version"])} for e in json.loads(raw)]
        except (ValueError, KeyError, TypeError):
            return []
    versions = [part.strip().removeprefix("v") for part in raw.split(_STACK_SEP.strip())]
    return [{"version": v} for v in versions if contract.VERSION_RE.fullmatch(v)]


def _save_history(client: MlflowClient, name: str, alias: str, entries: list[dict]) -> None:
    # A line a person reads in the MLflow UI ("v1 → v2 → v3"); who and why are in contract.TAG_HISTORY.
    text = _STACK_SEP.join(f"v{e['version']}" for e in entries[-_HISTORY_KEEP:])
    client.set_registered_model_tag(name, contract.alias_history_tag(alias), text)


def current_version(client: MlflowClient, name: str, alias: str) -> str | None:
    version = (registered_model(client, name).aliases or {}).get(alias)
    return str(version) if version is not None else None


def check_gate(client: MlflowClient, name: str, version: str, gate: Gate) -> str:
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


def _set_stage(client: MlflowClient, name: str, version: str) -> bool:
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


def _point_alias(client: MlflowClient, name: str, alias: str, version: str, expected: str | None, by: str | None = None,
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


def _raced(client: MlflowClient, name: str, exc: AliasRaced, entries: list[dict], alias: str, event: alias_history.Event,
           noticed_by: str) -> None:
    """Record what actually happened: edgeq's own move when it landed, then the move that raced it."""
    if exc.moved:
        _save_history(client, name, alias, entries)
        alias_history.record(client, name, event)
    alias_history.notice(client, name, f"{noticed_by} (raced)")


def guard_rolled_back(client: MlflowClient, name: str, version: str) -> str:
    """The guard's reason when it rolled ``version`` back and no person has overridden it since, else ""."""
    tags = model_version(client, name, version).tags or {}
    if tags.get(contract.TAG_GUARD_VERDICT) != contract.GUARD_ROLLED_BACK:
        return ""
    return f"on {tags.get(contract.TAG_GUARD_AT, '?')}: {tags.get(contract.TAG_GUARD_REASON, '')[:200]}"


def promote(client: MlflowClient, name: str, version: str, alias: str, gate: Gate, reason: str = "",
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
    entries = history(client, name, alias)
    if previous and (not entries or entries[-1]["version"] != previous):
        entries.append({"version": previous, "by": "unknown", "at": ""})  # alias set outside edgeq
    entries.append({"version": version, "by": getpass.getuser(), "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    kind = alias_history.OVERRIDE if override_guard else alias_history.PROMOTE
    why = "; ".join(part for part in (reason, f"overrides the guard's rollback {refused}" if refused else "", checked) if part)
    event = alias_history.new_event(kind, alias, previous, version, why, gate.force)
    retry = f"{getpass.getuser()}@{now_iso()}" if override_guard else ""
    try:
        stage = _point_alias(client, name, alias, version, previous, retry=retry)
    except AliasRaced as exc:
        _raced(client, name, exc, entries, alias, event, "edgeq promote")
        raise
    _save_history(client, name, alias, entries)
    alias_history.record(client, name, event)
    if refused:
        client.set_model_version_tag(name, version, contract.TAG_GUARD_VERDICT, contract.GUARD_OVERRIDDEN)
    return Promotion(name, alias, version, previous, stage)


def rollback_target(client: MlflowClient, name: str, alias: str) -> tuple[str, str]:
    """(current version, the version it replaced) of ``alias``: what ``rollback`` would do, without doing it."""
    current = current_version(client, name, alias)
    if current is None:
        raise RegistryToolError(f"model {name!r} has no alias {alias!r} to roll back")
    entries = history(client, name, alias)
    while entries and entries[-1]["version"] == current:
        entries.pop()
    if not entries:
        raise RegistryToolError(f"alias {alias!r} of {name!r} has no earlier version to roll back to")
    return current, entries[-1]["version"]


def rollback(client: MlflowClient, name: str, alias: str, reason: str = "", by: str | None = None,
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
    entries = history(client, name, alias)
    while entries and entries[-1]["version"] == current:
        entries.pop()
    why = reason or f"rolled back from v{current} to the version before it"
    event = alias_history.new_event(alias_history.ROLLBACK, alias, current, target, why, by=by)
    try:
        stage = _point_alias(client, name, alias, target, current, by, new_window=False)
    except AliasRaced as exc:
        _raced(client, name, exc, entries, alias, event, by or "edgeq rollback")
        raise
    _save_history(client, name, alias, entries)
    alias_history.record(client, name, event)
    return Promotion(name, alias, target, current, stage)


@dataclass(frozen=True)
class Choice:
    row: VersionRow
    reason: str


def best_for_device(client: MlflowClient, name: str, device: str, max_accuracy_drop: float,
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
