"""Everything known about each version of a registered model, gathered in one pass.

One row per version with its fleet aggregates (registry_tools/aggregate.py), whatever the size
of the fleet; per-device figures only when asked (``devices``), read from the device runs.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from edge import contract
from registry_tools.api import RegistryApi
from registry_tools import aggregate, aggregate_pass, evidence, runs
from registry_tools.device_reports import DeviceReport
from registry_tools.lookup import all_versions, registered_model  # registered_model: also what history.py imports from here
from registry_tools.table import THROTTLED_MARK, THROTTLED_NOTE, Column, num, percent, render, wrap

if TYPE_CHECKING:
    from mlflow.entities import Run

RunFetcher = Callable[[Any, Iterable[str]], dict[str, Any]]  # (client, run ids) → {run_id: Run}


@dataclass(frozen=True)
class VersionRow:
    version: str
    variant: str
    format: str
    run_id: str
    accuracy: float | None
    drop_points: float | None
    size_bytes: int | None
    host_p50_ms: float | None
    device_p50_ms: dict[str, float] = field(default_factory=dict)
    aliases: tuple[str, ...] = ()
    created: str = ""
    min_runtime: str = ""
    device_throttled: tuple[str, ...] = ()  # devices whose figures were measured while throttled
    refused_by: tuple[str, ...] = ()  # devices whose health gate (or check) rejected this version
    fleet: aggregate.Aggregate | None = None  # the version's fleet aggregates
    run_gone: str = ""  # "run deleted" / "run missing": the version's run cannot carry aggregates

    def as_dict(self) -> dict:
        return {
            "version": self.version, contract.TAG_VARIANT: self.variant, contract.TAG_FORMAT: self.format,
            "run_id": self.run_id, contract.M_ACCURACY: self.accuracy, contract.M_DROP: self.drop_points,
            contract.M_SIZE: self.size_bytes, contract.M_P50: self.host_p50_ms,
            "device_" + contract.D_P50: self.device_p50_ms, "aliases": list(self.aliases), "created": self.created,
            contract.TAG_MIN_RUNTIME: self.min_runtime, "device_throttled": list(self.device_throttled),
            "refused_by": list(self.refused_by),
            "fleet": self.fleet.metrics() if self.fleet else None,
            "fleet_summary": self.fleet.summary() if self.fleet else None,
            "run_gone": self.run_gone,
        }


DEVICE_DETAIL_CAP = 1000  # `edgeq versions --devices`: per-device columns for at most this many devices


def _per_device(client: RegistryApi, name: str, devices: bool | Iterable[str], notes: list[str],
                trust: evidence.Trust) -> evidence.Read:
    """The verified reports of the device runs asked for (all, capped; or the ids given)."""
    if devices is True:
        scan = evidence.device_runs(client, trust, limit=DEVICE_DETAIL_CAP)
        if scan.truncated:
            notes.append(f"per-device columns: {scan.note()}; `edgeq fleet {name} --running V` lists devices by version")
        return evidence.read_runs(scan.runs, trust)
    found: list[Run] = []
    for device in devices:
        clause = f"tags.`{contract.TAG_DEVICE_ID}` = {evidence.quote(contract.sanitize_device_id(device))}"
        found += evidence.device_runs(client, trust, clause, limit=10).runs
    return evidence.read_runs(found, trust)


def collect(client: RegistryApi, name: str, fetch_runs: RunFetcher = runs.runs_by_id,
            devices: bool | Iterable[str] = False, notes: list[str] | None = None,
            refresh_limit: int = aggregate.CHEAP_DEVICES, accept_unsigned: bool = False) -> list[VersionRow]:
    """All versions of ``name``, newest first, with run metrics and fleet aggregates (runs fetched in batches).

    The aggregates are refreshed here when the model has at most ``refresh_limit`` device runs (one small
    search); past that, the ones ``edgeq aggregate`` stored are shown. ``devices``: per-device figures too —
    True for every device (capped), or an iterable of device ids. Anything worth saying goes into ``notes``.
    """
    notes = notes if notes is not None else []
    rm = registered_model(client, name)
    aliases_of: dict[str, list[str]] = {}
    for alias, version in (rm.aliases or {}).items():
        aliases_of.setdefault(str(version), []).append(alias)
    rows = []
    trust = evidence.trust_for(client, name, accept_unsigned)
    versions = all_versions(client, name)
    fetched = fetch_runs(client, [mv.run_id for mv in versions])
    fresh = aggregate.refresh(client, name, versions, fetched, {a: str(v) for a, v in (rm.aliases or {}).items()},
                              limit=refresh_limit, trust=trust) if refresh_limit > 0 else aggregate.Refresh({}, 0, True)
    if fresh.truncated:  # the stored aggregates are shown: say how old they are
        notes.append(aggregate_pass.age_note(rm.tags or {})
                     + (" (more devices than a quick refresh reads)" if refresh_limit > 0 else ""))
    elif fresh.note():
        notes.append(fresh.note())
    detail = _per_device(client, name, devices, notes, trust) if devices else evidence.Read()
    for mv in versions:
        run = fetched.get(mv.run_id) if mv.run_id else None
        data = run.data if run else None
        metrics, tags = (data.metrics, data.tags) if data else ({}, {})
        version = str(mv.version)
        gone = aggregate.run_gone(mv, fetched)
        fleet = (None if gone else fresh.aggregates.get(version) if not fresh.truncated
                 else aggregate.Aggregate.from_metrics(version, metrics))
        reports: dict[str, DeviceReport] = {}
        if devices:
            evidence.add_legacy(detail, trust, version, metrics, tags)
            wanted = None if devices is True else set(devices)
            reports = {d: r for d, r in sorted(detail.reports.get(version, {}).items())
                       if r.is_about(version) and (wanted is None or d in wanted)}
        size = metrics.get(contract.M_SIZE)
        rows.append(
            VersionRow(
                version=version,
                variant=mv.tags.get(contract.TAG_VARIANT, "?"),
                format=mv.tags.get(contract.TAG_FORMAT, "?"),
                run_id=mv.run_id or "",
                accuracy=metrics.get(contract.M_ACCURACY),
                drop_points=metrics.get(contract.M_DROP),
                size_bytes=int(size) if size is not None else None,
                host_p50_ms=metrics.get(contract.M_P50),
                device_p50_ms={d: r.metrics[contract.D_P50] for d, r in reports.items() if contract.D_P50 in r.metrics},
                aliases=tuple(sorted(aliases_of.get(version, []))),
                created=datetime.fromtimestamp(mv.creation_timestamp / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M"),
                min_runtime=mv.tags.get(contract.TAG_MIN_RUNTIME, ""),
                device_throttled=tuple(d for d, r in reports.items() if r.throttled),
                refused_by=tuple(d for d, r in reports.items() if r.status == contract.STATUS_REJECTED),
                fleet=fleet,
                run_gone=gone,
            )
        )
    return sorted(rows, key=lambda r: int(r.version), reverse=True)


def devices(rows: list[VersionRow]) -> list[str]:
    return sorted({d for r in rows for d in r.device_p50_ms})


def format_table(rows: list[VersionRow], notes: list[str] | None = None, width: int | None = None) -> str:
    """One line per version: the pipeline's figures, the fleet aggregates, and per-device columns when collected.

    ``width``: fit that many columns (figures left out first, per-device columns before all; the refusing devices
    cut with "…"); None: everything.
    """
    if not rows:
        return "\n".join(wrap(["no version registered yet (the pipeline registers one per variant)"] + list(notes or []),
                               width))
    devs = devices(rows)
    refusals = any(r.refused_by for r in rows)

    def fleet_cells(r: VersionRow) -> list[str]:
        f = r.fleet
        if f is None:
            return [r.run_gone or "—", "—", "—", "—"]
        mark = THROTTLED_MARK if f.throttled else ""
        return [f"{f.healthy}/{f.rejected}/{f.behind}", num(f.p50_median, ".3f") + (mark if f.p50_median is not None else ""),
                num(f.p99_worst, ".3f"), percent(f.acc_median)]

    header = ([Column("version", "ver"), Column("variant"), Column("accuracy %", "acc %"),
               Column("drop pts", "drop", drop=5), Column("size MB", "MB", drop=7), Column("host p50 ms", "host p50", drop=6),
               Column("devices ok/rej/behind", "ok/rej/behind"), Column("fleet p50 ms", "p50 ms", drop=2),
               Column("worst p99 ms", "p99 ms", drop=4), Column("sample acc %", "sample %", drop=3)]
              + [Column(f"{d} p50 ms", drop=9, group="per-device p50 columns") for d in devs]
              + [Column("aliases"), Column("created", drop=8)] + ([Column("refused by")] if refusals else []))
    body = [
        [r.version, r.variant, percent(r.accuracy, 2), num(r.drop_points, "+.2f"),
         num(None if r.size_bytes is None else r.size_bytes / 1e6, ".3f"), num(r.host_p50_ms, ".3f")] + fleet_cells(r)
        + [num(r.device_p50_ms.get(d), ".3f") + (THROTTLED_MARK if d in r.device_throttled else "") for d in devs]
        + [",".join(r.aliases) or "-", r.created] + ([",".join(r.refused_by) or "-"] if refusals else [])
        for r in rows
    ]
    lines = render(header, body, free_last="----------" if refusals else None, width=width)
    prose = []
    if any(r.device_throttled for r in rows) or any(r.fleet and r.fleet.throttled for r in rows):
        prose.append(THROTTLED_NOTE)
    if not devs:
        prose.append("fleet p50: median over healthy devices; per device: edgeq versions MODEL --devices, or edgeq fleet MODEL")
    return "\n".join(lines + wrap(prose + list(notes or []), width))
