"""The alias history people read: who moved which alias from which version to which, when, why, forced or not.

Kept twice on the registered model: a JSON tag (``contract.TAG_HISTORY``) that
``edgeq history`` reads, and a table at the end of the model's description, under
``contract.HISTORY_HEADING``, which is what the MLflow UI shows on the model's page.
Both are bounded by what the SQL stores hold (5000 characters per tag value and per
description), so the oldest events fall out first.
"""
from __future__ import annotations

import getpass
import json
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

from mlflow.tracking import MlflowClient

from edge import contract
from registry_tools.table import render
from registry_tools.versions import registered_model

PROMOTE = "promote"
ROLLBACK = "rollback"
KINDS = (PROMOTE, ROLLBACK)

STORE_LIMIT = 5000  # characters of a registered-model tag value or description in MLflow's SQL stores
_KEEP = 50
_REASON_CHARS = 400  # of each reason kept in the tag (the full text was printed when it happened)
_TABLE_ROWS = 12
_TABLE_REASON_CHARS = 160


@dataclass(frozen=True)
class Event:
    kind: str  # PROMOTE or ROLLBACK
    alias: str
    from_version: str | None
    to_version: str
    by: str
    at: str  # ISO 8601, UTC
    forced: bool
    reason: str

    def as_dict(self) -> dict:
        return asdict(self)


def new_event(kind: str, alias: str, from_version: str | None, to_version: str, reason: str, forced: bool = False) -> Event:
    """An event that happens now, by the user running edgeq."""
    if kind not in KINDS:
        raise ValueError(f"unknown history event kind {kind!r}")
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    return Event(kind, alias, from_version, str(to_version), getpass.getuser(), now, forced, reason)


def _shorten(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _encode(events: list[Event]) -> str:
    """Newest events that fit the store, oldest dropped first."""
    rows = [{"kind": e.kind, "alias": e.alias, "from": e.from_version, "to": e.to_version, "by": e.by, "at": e.at,
             "forced": e.forced, "why": _shorten(e.reason, _REASON_CHARS)} for e in events[-_KEEP:]]
    while True:
        text = json.dumps(rows, ensure_ascii=False, separators=(",", ":"))
        if len(text) <= STORE_LIMIT or not rows:
            return text
        rows.pop(0)


def _decode(text: str | None) -> list[Event]:
    if not text:
        return []
    try:
        rows = json.loads(text)
        return [Event(r["kind"], r["alias"], r.get("from"), str(r["to"]), r.get("by", ""), r.get("at", ""),
                      bool(r.get("forced")), r.get("why", "")) for r in rows]
    except (ValueError, KeyError, TypeError):
        # Someone edited the tag by hand: start over rather than refusing every later promotion.
        return []


def read(client: MlflowClient, name: str, alias: str | None = None) -> list[Event]:
    """Oldest first; only ``alias``'s events when given."""
    events = _decode(registered_model(client, name).tags.get(contract.TAG_HISTORY))
    return [e for e in events if alias is None or e.alias == alias]


def record(client: MlflowClient, name: str, event: Event) -> None:
    """Append ``event`` to the tag and rewrite the description's history table."""
    rm = registered_model(client, name)
    events = _decode(rm.tags.get(contract.TAG_HISTORY)) + [event]
    client.set_registered_model_tag(name, contract.TAG_HISTORY, _encode(events))
    client.update_registered_model(name, description=with_section(rm.description or "", events))


def _version(v: str | None) -> str:
    return f"v{v}" if v else "unset"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def markdown_section(events: list[Event], room: int = STORE_LIMIT) -> str:
    """The newest events as a markdown table under ``contract.HISTORY_HEADING`` in at most ``room`` characters ("" if none fits)."""
    header = [contract.HISTORY_HEADING, "", "| when (UTC) | alias | change | kind | by | why |", "|---|---|---|---|---|---|"]
    rows = [
        f"| {e.at.replace('T', ' ').replace('+00:00', '')} | {_cell(e.alias)} | {_version(e.from_version)} → v{e.to_version} "
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


def format_table(events: list[Event]) -> str:
    """Newest first, one line per event."""
    if not events:
        return "no alias changes recorded by edgeq yet"
    header = ["when (UTC)", "alias", "from", "to", "kind", "by", "why"]
    body = [[e.at.replace("T", " ").replace("+00:00", ""), e.alias, _version(e.from_version), f"v{e.to_version}",
             e.kind + (" (forced)" if e.forced else ""), e.by, e.reason] for e in reversed(events)]
    return "\n".join(render(header, body, free_last="---"))
