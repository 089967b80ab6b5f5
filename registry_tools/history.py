"""The alias history people read: who moved which alias from which version to which, when, why, forced or not.

Kept twice on the registered model: a tag (``contract.TAG_HISTORY``) that ``edgeq history``
reads — one readable line per event, newest first, so the MLflow UI's tag list shows
sentences, not JSON — and a table at the end of the model's description, under
``contract.HISTORY_HEADING``, which is what the MLflow UI shows on the model's page.
Both are bounded by what the SQL stores hold (5000 characters per tag value and per
description), so the oldest events fall out first.

Nothing bypasses it: an alias whose target the history does not explain was moved
outside edgeq (the MLflow UI, a plain client). ``read`` shows such a move at once, marked
``contract.HISTORY_OUTSIDE``; ``notice`` (called by promote, rollback and the guard) records it.
"""
from __future__ import annotations

import getpass
import json
import re
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from edge import contract
from registry_tools.api import RegistryApi
from registry_tools.table import Column, render
from registry_tools.lookup import registered_model

if TYPE_CHECKING:
    from mlflow.entities.model_registry import RegisteredModel

PROMOTE = "promote"
ROLLBACK = "rollback"
OVERRIDE = "override"  # a person promoted a version the guard had rolled back
OUTSIDE = contract.HISTORY_OUTSIDE
ROLLOUT = "rollout"  # a staged rollout's stage, pause or end: the alias stays at its version (vN → vN)
KINDS = (PROMOTE, ROLLBACK, OVERRIDE, OUTSIDE, ROLLOUT)
UNKNOWN_BY = "unknown"  # who moved an alias outside edgeq: MLflow does not say

STORE_LIMIT = 5000  # characters of a registered-model tag value or description in MLflow's SQL stores
_KEEP = 50
_REASON_CHARS = 400  # of each reason kept in the tag (the full text was printed when it happened)
_TABLE_ROWS = 12
_TABLE_REASON_CHARS = 160
_SEP = " | "
_LINE = re.compile(r"^(?P<at>[^|]*) \| (?P<alias>[^|]*) \| (?P<src>\S+) → (?P<dst>\S+) \| (?P<kind>[^|]*?)"
                   r"(?P<forced> \(forced\))? \| (?P<by>[^|]*) \| (?P<why>.*)$")


@dataclass(frozen=True)
class Event:
    kind: str  # one of KINDS
    alias: str
    from_version: str | None
    to_version: str  # "" when the alias was deleted (outside edgeq)
    by: str
    at: str  # ISO 8601, UTC; "" for an outside move not recorded yet
    forced: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_event(kind: str, alias: str, from_version: str | None, to_version: str, reason: str, forced: bool = False,
              by: str | None = None) -> Event:
    """An event that happens now, by ``by`` (default: the user running edgeq)."""
    if kind not in KINDS:
        raise ValueError(f"unknown history event kind {kind!r}")
    return Event(kind, alias, from_version, str(to_version), by or getpass.getuser(), _now(), forced, reason)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _field(text: str) -> str:
    """A field before the last one: one line, no separator inside."""
    return " ".join(str(text).split()).replace("|", "¦")


def _line(e: Event) -> str:
    change = f"{_version(e.from_version)} → {_version(e.to_version)}"
    kind = e.kind + (" (forced)" if e.forced else "")
    return _SEP.join([_field(e.at), _field(e.alias), change, _field(kind), _field(e.by), _shorten(e.reason, _REASON_CHARS)])


def _unversion(text: str) -> str | None:
    return None if text == "unset" else text.removeprefix("v")


def _parse_line(line: str) -> Event | None:
    m = _LINE.match(line)
    if not m:
        return None
    return Event(m["kind"], m["alias"], _unversion(m["src"]), _unversion(m["dst"]) or "", m["by"], m["at"],
                 bool(m["forced"]), m["why"])


def _encode(events: list[Event]) -> str:
    """The newest events that fit the store, one line each, newest first; the oldest are dropped first."""
    lines = [_line(e) for e in reversed(events[-_KEEP:])]
    while lines and len("\n".join(lines)) > STORE_LIMIT:
        lines.pop()
    return "\n".join(lines)


def _decode(text: str | None) -> list[Event]:
    """Oldest first. Reads the readable lines and the JSON list older edgeq versions wrote."""
    if not text:
        return []
    if text.lstrip().startswith("["):
        return _decode_json(text)
    parsed = [_parse_line(line) for line in text.splitlines() if line.strip()]
    # A line someone edited by hand into another shape is skipped, not a reason to refuse every later promotion.
    return [e for e in reversed(parsed) if e is not None]


def _decode_json(text: str) -> list[Event]:
    try:
        rows = json.loads(text)
        return [Event(r["kind"], r["alias"], r.get("from"), str(r["to"]), r.get("by", ""), r.get("at", ""),
                      bool(r.get("forced")), r.get("why", "")) for r in rows]
    except (ValueError, KeyError, TypeError):
        return []


def unexplained(rm: RegisteredModel, events: list[Event], noticed_by: str = "") -> list[Event]:
    """One OUTSIDE event per alias whose current target the history does not explain (not recorded; ``at`` empty)."""
    last: dict[str, str] = {}
    for e in events:
        last[e.alias] = e.to_version
    current = {alias: str(v) for alias, v in (rm.aliases or {}).items()}
    found = []
    for alias in sorted(set(last) | set(current)):
        before, now = last.get(alias) or None, current.get(alias)
        if before == now:
            continue
        what = f"alias {alias} found at {_version(now)}" + (f", where edgeq last set {_version(before)}" if before else
                                                            ", which edgeq never set")
        how = "moved outside edgeq (MLflow UI, REST or a plain MLflow client) at an unknown time"
        noticed = f"; noticed by {noticed_by}" if noticed_by else ""
        found.append(Event(OUTSIDE, alias, before, now or "", UNKNOWN_BY, "", False, f"{what}: {how}{noticed}"))
    return found


def read(client: RegistryApi, name: str, alias: str | None = None) -> list[Event]:
    """Oldest first; only ``alias``'s events when given. Moves made outside edgeq and not yet recorded come last."""
    rm = registered_model(client, name)
    events = _decode(rm.tags.get(contract.TAG_HISTORY))
    events = events + unexplained(rm, events)
    return [e for e in events if alias is None or e.alias == alias]


def pending(client: RegistryApi, name: str) -> list[Event]:
    """The alias moves made outside edgeq that the history does not explain yet (one call, nothing written)."""
    rm = registered_model(client, name)
    return unexplained(rm, _decode(rm.tags.get(contract.TAG_HISTORY)))


def notice(client: RegistryApi, name: str, noticed_by: str) -> list[Event]:
    """Record every alias move made outside edgeq since the history last saw the aliases; returns them."""
    rm = registered_model(client, name)
    events = _decode(rm.tags.get(contract.TAG_HISTORY))
    found = [Event(e.kind, e.alias, e.from_version, e.to_version, e.by, _now(), e.forced, e.reason)
             for e in unexplained(rm, events, noticed_by)]
    if found:
        _write(client, name, rm, events + found)
    return found


def record(client: RegistryApi, name: str, event: Event) -> None:
    """Append ``event`` to the tag and rewrite the description's history table."""
    rm = registered_model(client, name)
    _write(client, name, rm, _decode(rm.tags.get(contract.TAG_HISTORY)) + [event])


def record_earlier(client: RegistryApi, name: str, events: list[Event]) -> None:
    """Put ``events`` before every recorded one (moves older than the history, e.g. from an earlier edgeq's tag)."""
    rm = registered_model(client, name)
    _write(client, name, rm, events + _decode(rm.tags.get(contract.TAG_HISTORY)))


def _write(client: RegistryApi, name: str, rm: RegisteredModel, events: list[Event]) -> None:
    client.set_registered_model_tag(name, contract.TAG_HISTORY, _encode(events))
    client.update_registered_model(name, description=with_section(rm.description or "", events))


def _version(v: str | None) -> str:
    return f"v{v}" if v else "unset"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _when(e: Event) -> str:
    if e.at:
        return e.at.replace("T", " ").replace("+00:00", "")
    return "not recorded yet" if e.kind == OUTSIDE else "unknown"  # else: a move from before the history


def markdown_section(events: list[Event], room: int = STORE_LIMIT) -> str:
    """The newest events as a markdown table under ``contract.HISTORY_HEADING`` in at most ``room`` characters ("" if none fits)."""
    header = [contract.HISTORY_HEADING, "", "| when (UTC) | alias | change | kind | by | why |", "|---|---|---|---|---|---|"]
    rows = [
        f"| {_when(e)} | {_cell(e.alias)} | {_version(e.from_version)} → {_version(e.to_version)} "
        f"| {e.kind}{' (forced)' if e.forced else ''} | {_cell(e.by)} | {_cell(_shorten(e.reason, _TABLE_REASON_CHARS))} |"
        for e in reversed(events[-_TABLE_ROWS:])
    ]
    while rows:
        text = "\n".join(header + rows)
        if len(text) <= room:
            return text
        rows.pop()
    return ""


def with_section(description: str, events: list[Event]) -> str:
    """``description`` with its edgeq history section (always the last part) replaced by the current one."""
    own = description.partition(contract.HISTORY_HEADING)[0].rstrip()
    section = markdown_section(events, STORE_LIMIT - len(own) - 2)
    # The user's own text is never cut: with no room left, the table stays out (edgeq history still has it all).
    return (own + "\n\n" if own else "") + section if section else own


def format_table(events: list[Event], width: int | None = None) -> str:
    """Newest first, one line per event. ``width``: fit that many columns (times to the minute, the reason cut
    with "…", who moved it left out only when the reason would shrink below a readable length); None: everything."""
    if not events:
        return "no alias changes recorded by edgeq yet"
    header = [Column("when (UTC)"), Column("alias"), Column("from"), Column("to"), Column("kind"),
              Column("by", drop=1), Column("why")]
    stamp = None if width is None else len("2026-01-31 12:00")  # to the minute when the table must fit
    body = [[_when(e)[:stamp], e.alias, _version(e.from_version), _version(e.to_version),
             e.kind + (" (forced)" if e.forced else ""), e.by, e.reason] for e in reversed(events)]
    return "\n".join(render(header, body, free_last="---", width=width))
