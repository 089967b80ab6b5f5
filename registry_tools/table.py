"""Plain-text tables for the terminal: the columns ``edgeq versions``, ``fleet`` and ``history`` print."""
from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

THROTTLED_MARK = "*"
THROTTLED_NOTE = f"{THROTTLED_MARK} measured while the device was throttled: not comparable with the others"
CUT = "…"
MIN_FREE = 24  # characters of the free-text column kept before other columns are left out
GAP = "  "


@dataclass(frozen=True)
class Column:
    """A column's title, and what may happen to it when the table must fit a width.

    ``short``: the title used when room is short; ``drop``: 0 keeps the column always (it identifies the row),
    otherwise columns are left out highest ``drop`` first; ``group``: how the note names left-out columns of a kind
    ("8 per-device p50 columns" rather than eight titles).
    """

    title: str
    short: str = ""
    drop: int = 0
    group: str = ""


def num(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``; a dash when there is none."""
    return "—" if value is None else format(value, spec)


def percent(fraction: float | None, digits: int = 1) -> str:
    """A fraction as people read it, ``0.953`` → ``95.3``, under a title that says ``%``; a dash when there is none."""
    return num(None if fraction is None else 100 * fraction, f".{digits}f")


def cut(text: str, room: int) -> str:
    """``text`` in at most ``room`` characters, its end replaced by "…" when it did not fit."""
    if len(text) <= room:
        return text
    return text[: max(room - 1, 0)].rstrip() + CUT if room > 0 else ""


def wrap(lines: Sequence[str], width: int | None) -> list[str]:
    """Lines of prose (notes under a table) wrapped to ``width``; unchanged without one."""
    if width is None:
        return list(lines)
    out: list[str] = []
    for line in lines:
        out += textwrap.wrap(line, width, subsequent_indent="  ", break_on_hyphens=False) or [""]
    return out


def render(header: Sequence[str | Column], body: list[list[str]], free_last: str | None = None,
           width: int | None = None) -> list[str]:
    """Header, rule and rows, each column as wide as its widest cell.

    With ``free_last`` the last column is free text, not padded, under a rule of ``free_last``. With ``width`` the
    table fits it: short titles first, then the free text cut with "…" (to ``MIN_FREE`` characters), then columns
    left out by their ``drop`` rank, named in a note under the table. None: every column, every character.
    """
    columns = [c if isinstance(c, Column) else Column(c) for c in header]
    free = free_last is not None
    keep = list(range(len(columns)))
    titles = [c.title for c in columns]
    dropped: list[int] = []
    if width is not None and _total(titles, body, keep, free) > width:
        titles = [c.short or c.title for c in columns]
        while _total(titles, body, keep, free, MIN_FREE) > width:
            candidates = [i for i in keep if columns[i].drop and not (free and i == len(columns) - 1)]
            if not candidates:
                break
            worst = max(candidates, key=lambda i: (columns[i].drop, i))
            keep.remove(worst)
            dropped.append(worst)
    rows = [[titles[i] for i in keep]] + [[row[i] for i in keep] for row in body]
    padded = len(keep) - (1 if free else 0)
    widths = [max(len(row[i]) for row in rows) for i in range(padded)]
    if free and width is not None:
        room = max(width - sum(widths) - len(GAP) * padded, 1)
        rows = [row[:padded] + [cut(row[padded], room)] for row in rows]
    lines = [GAP.join([c.ljust(w) for c, w in zip(row[:padded], widths)] + row[padded:]).rstrip() for row in rows]
    lines.insert(1, GAP.join(["-" * w for w in widths] + ([free_last] if free_last is not None else [])))
    if dropped:
        lines += wrap([f"left out to fit {width} columns: {_names([columns[i] for i in sorted(dropped)])} (--wide shows them)"], width)
    return lines


def _total(titles: list[str], body: list[list[str]], keep: list[int], free: bool, free_room: int | None = None) -> int:
    """The widest line the kept columns make; the free column counted at most ``free_room`` wide."""
    widths = [max([len(titles[i])] + [len(row[i]) for row in body]) for i in keep]
    if free and widths and free_room is not None:
        widths[-1] = min(widths[-1], max(free_room, len(titles[keep[-1]])))
    return sum(widths) + len(GAP) * (len(widths) - 1)


def _names(columns: list[Column]) -> str:
    groups: dict[str, int] = {}
    names: list[str] = []
    for c in columns:
        if c.group:
            if c.group not in groups:
                names.append(c.group)
            groups[c.group] = groups.get(c.group, 0) + 1
        else:
            names.append(c.title)
    return ", ".join(f"{groups[n]} {n}" if n in groups else n for n in names)
