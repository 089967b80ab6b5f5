"""Tables fit the terminal: ``edgeq versions``, ``fleet`` and ``history`` at 80 and 100 columns, and whole without a width."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from registry_tools import fleet, history, table, versions
from registry_tools.aggregate import Aggregate

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=timezone.utc)
DEVICES = [f"pi-greenhouse-{i:02d}" for i in range(9)]
REASON = ("health gate: sample accuracy 0.094 below bound 0.810 on 32 images; p99 latency 12.40 ms is above "
          "--max-p99-ms 5.0; peak RSS 180.2 MB is above --max-rss-mb 120 (throttled: under-voltage, arm frequency capped)")


def _versions() -> list[versions.VersionRow]:
    rows = []
    for n in (7, 6, 5):
        rows.append(versions.VersionRow(
            version=str(n), variant="float16" if n == 6 else "int8", format="tflite", run_id=f"run{n}",
            accuracy=0.9534, drop_points=-0.25, size_bytes=1_234_567, host_p50_ms=3.21,
            device_p50_ms={d: 30.0 + i for i, d in enumerate(DEVICES)}, aliases=("canary", "production") if n == 7 else (),
            created="2026-12-01 10:00", device_throttled=(DEVICES[0],), refused_by=tuple(DEVICES[:6]) if n == 5 else (),
            fleet=Aggregate(str(n), 12, 10, 1, 1, 1, 31.2, 48.1, 77.0, 0.953, 0.906)))
    return rows


def _devices() -> list[fleet.DeviceRow]:
    rows = []
    for i, d in enumerate(DEVICES):
        flags = (f"rejected v7 ({REASON})",) if i % 2 else ()
        rows.append(fleet.DeviceRow(d, f"{d}.greenhouse.example.internal", "production", "6", "7",
                                    NOW - timedelta(minutes=i), 60.0, 31.0, 48.0, 0.969, i == 3, flags, f"run{i}"))
    return rows


def _events() -> list[history.Event]:
    return [history.Event(history.PROMOTE, "production", str(n), str(n + 1), "ops-engineer", f"2026-12-0{n}T10:00:00+00:00",
                          n == 2, f"canary v{n + 1}: {REASON}") for n in range(1, 6)]


def _tables(width):
    return {
        "versions": versions.format_table(_versions(), ["a note under the table, long enough to need wrapping at "
                                                        "eighty columns when the terminal is that narrow"], width=width),
        "fleet": fleet.format_table(_devices(), now=NOW, notes=["showing the first 9 devices"], width=width),
        "history": history.format_table(_events(), width=width),
    }


@pytest.mark.parametrize("width", [80, 100])
def test_each_table_fits_the_width_and_keeps_what_identifies_a_row(width):
    tables = _tables(width)
    for name, text in tables.items():
        assert max(len(line) for line in text.splitlines()) <= width, (name, text)
    v, f, h = (tables[k].splitlines() for k in ("versions", "fleet", "history"))
    assert [line.split()[:2] for line in v[2:5]] == [["7", "int8"], ["6", "float16"], ["5", "int8"]]
    assert "canary,production" in v[2] and "95.34" in v[2], "accuracy in percent, aliases kept"
    assert "…" in v[4], "the refusing devices cut"
    assert f"left out to fit {width} columns: " in tables["versions"] and "9 per-device p50 columns" in " ".join(v)
    rows = {line.split()[0]: line for line in f if line.startswith("pi-")}
    assert sorted(rows) == DEVICES
    assert all("production" in line and "v6" in line for line in rows.values())
    assert rows[DEVICES[1]].rstrip().endswith("…") and "rejected v7 (health gate" in rows[DEVICES[1]]
    assert "9 device(s): 5 ok, 4 rejected" in tables["fleet"]
    events = [line for line in h if line.startswith("2026-")]
    assert len(events) == 5 and all("production" in e and "…" in e for e in events)
    assert events[0].startswith("2026-12-05 10:00 ") and "v5" in events[0] and "v6" in events[0]


def test_without_a_width_every_column_and_character_is_there():
    tables = _tables(None)
    assert REASON in tables["fleet"] and REASON in tables["history"]
    assert all(f"{d} p50 ms" in tables["versions"] for d in DEVICES)
    assert ",".join(DEVICES[:6]) in tables["versions"]
    assert "2026-12-05 10:00:00" in tables["history"] and "ops-engineer" in tables["history"]
    assert "left out" not in "".join(tables.values()) and "…" not in "".join(tables.values())
    assert max(len(line) for line in tables["versions"].splitlines()) > 300


def test_accuracy_is_in_percent_for_people():
    v = versions.format_table(_versions(), width=None)
    assert "sample acc %" in v and "95.3 " in v and "0.953" not in v
    assert "96.9" in fleet.format_table(_devices(), now=NOW) and "0.969" not in fleet.format_table(_devices(), now=NOW)
    assert "sample accuracy median 95.3 % (worst 90.6 %)" in Aggregate("7", 12, 10, 1, 1, 0, 31.2, 48.1, 77.0, 0.953, 0.906).summary()


def test_render_cuts_the_free_column_before_leaving_columns_out():
    header = [table.Column("id"), table.Column("figure", "fig", drop=1), table.Column("why")]
    body = [["a", "12.5", "x" * 60], ["b", "3.0", "short"]]
    lines = table.render(header, body, free_last="---", width=40)
    assert all(len(line) <= 40 for line in lines) and lines[0].split() == ["id", "fig", "why"]
    assert lines[2].endswith("…") and lines[3].endswith("short")
    narrow = table.render(header, body, free_last="---", width=20)
    assert narrow[0].split() == ["id", "why"] and " ".join(" ".join(narrow[4:]).split()).startswith("left out to fit 20 columns: figure")
    assert table.render(header, body, free_last="---") == table.render(header, body, free_last="---", width=None)
