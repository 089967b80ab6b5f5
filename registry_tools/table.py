"""Plain-text tables for the terminal: the columns ``edgeq versions``, ``fleet`` and ``history`` print."""
from __future__ import annotations

THROTTLED_MARK = "*"
THROTTLED_NOTE = f"{THROTTLED_MARK} measured while the device was throttled: not comparable with the others"


def num(value: float | None, spec: str) -> str:
    """``value`` formatted with ``spec``; a dash when there is none."""
    return "—" if value is None else format(value, spec)


def render(header: list[str], body: list[list[str]], free_last: str | None = None) -> list[str]:
    """Header, rule and rows, each column as wide as its widest cell.

    With ``free_last`` the last column is free text, not padded, under a rule of ``free_last``.
    """
    rows = [header] + body
    padded = len(header) - (1 if free_last is not None else 0)
    widths = [max(len(row[i]) for row in rows) for i in range(padded)]
    lines = ["  ".join([c.ljust(w) for c, w in zip(row[:padded], widths)] + row[padded:]).rstrip() for row in rows]
    lines.insert(1, "  ".join(["-" * w for w in widths] + ([free_last] if free_last is not None else [])))
    return lines
