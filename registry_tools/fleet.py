"""The fleet view: every device running a model, what it runs, when it was last seen, and whether that is fine.

Reads the device runs of the fleet experiment (one per model and device, docs/fleet.md)
through a server-side filter, page by page, up to a cap it names when it stops there. A
device's figures and verdicts come from its own run (``v<N>.*`` keys); only a device that
reported in the legacy layout sends the view to that version's run. "Last seen" is the run's
end time, which the device stamps with the server's time (edge/clock.py): a wrong device clock
neither makes it look fresh nor stale, and is flagged.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from edge import contract
from registry_tools import aggregate
from registry_tools.device_reports import DeviceReport, device_reports, report_for
from registry_tools.runs import runs_by_id
from registry_tools.table import THROTTLED_MARK, THROTTLED_NOTE, num, render
from registry_tools.versions import all_versions, registered_model

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

DEFAULT_INTERVAL_S = contract.DEFAULT_INTERVAL_MINUTES * 60  # for devices that do not say how often they run
DEFAULT_LIMIT = 200  # devices listed unless --limit says otherwise: a page a person reads, in ~1 s

OK, STALE, BEHIND, REJECTED, NOT_INSTALLED = "ok", "stale", "behind", "rejected", "nothing installed"
CLOCK = "clock"  # flags starting with it: the device's clock is off, or its last seen lies in the future
_BUSY = contract.last_status(contract.ExitCode.BUSY)  # another run held the lock: nothing wrong with the device


@dataclass(frozen=True)
class DeviceRow:
    device: str
    hostname: str
    alias: str
    running_version: str | None
    alias_version: str | None  # what the device's alias points to now
    last_seen: datetime | None
    interval_s: float
    p50_ms: float | None
    p99_ms: float | None
    sample_accuracy: float | None
    throttled: bool
    flags: tuple[str, ...]  # e.g. ("stale", "rejected v5 (…)", "behind"); empty means ok
    run_id: str
    clock_skew_s: float | None = None

    @property
    def status(self) -> str:
        return ", ".join(self.flags) or OK

    def as_dict(self) -> dict:
        return {
            "device": self.device, "hostname": self.hostname, "alias": self.alias,
            "running_version": self.running_version, "alias_version": self.alias_version,
            "last_seen": self.last_seen.isoformat(timespec="seconds") if self.last_seen else None,
            "interval_s": self.interval_s, "latency_p50_ms": self.p50_ms, "latency_p99_ms": self.p99_ms,
            "sample_accuracy": self.sample_accuracy, "throttled": self.throttled, "status": self.status,
            "flags": list(self.flags), "run_id": self.run_id, "clock_skew_s": self.clock_skew_s,
        }


@dataclass(frozen=True)
class Query:
    """Which devices to list: server-side filters and the cap."""

    version: str | None = None  # running this version
    status: str | None = None  # last run's status: healthy, rejected, "exit 3"…
    device: str | None = None
    limit: int = DEFAULT_LIMIT

    def clauses(self) -> list[str]:
        out = []
        if self.version:
            out.append(f"tags.`{contract.TAG_RUNNING_VERSION}` = '{contract.check_version_number(self.version)}'")
        if self.status:
            out.append(f"tags.`{contract.TAG_LAST_STATUS}` = {aggregate.quote(self.status)}")
        if self.device:
            out.append(f"tags.`{contract.TAG_DEVICE_ID}` = {aggregate.quote(contract.sanitize_device_id(self.device))}")
        return out

    @property
    def filtered(self) -> bool:
        return bool(self.version or self.status or self.device)


def _ms_to_dt(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, timezone.utc) if ms else None


def _last_seen(run) -> datetime | None:
    """The run's end time (a heartbeat sets it, server-corrected); legacy runs: the heartbeat metric's timestamp."""
    if run.info.end_time:
        return _ms_to_dt(run.info.end_time)
    stamps = {m.key: m.timestamp for m in getattr(run.data, "_metric_objs", [])}
    return _ms_to_dt(stamps.get(contract.M_HEARTBEAT) or max(stamps.values(), default=None) or run.info.start_time)


def _running_version(run) -> str | None:
    tag = run.data.tags.get(contract.TAG_RUNNING_VERSION)
    metric = run.data.metrics.get(contract.M_RUNNING_VERSION)
    if tag:
        return tag
    return str(int(metric)) if metric else None


def _older(running: str, target: str) -> bool:
    try:
        return int(contract.check_version_number(running)) < int(contract.check_version_number(target))
    except ValueError:
        return False  # not version numbers: nothing to compare


def _skew(run) -> float | None:
    try:
        return float(run.data.tags[contract.TAG_CLOCK_SKEW_S])
    except (KeyError, ValueError):
        return None


class _Reports:
    """A device's report on a version: from its own run, else (legacy layout) from the version's run."""

    def __init__(self, client: MlflowClient, name: str, runs: list, versions: Iterable[str | None]):
        self.legacy: dict[str, dict[str, DeviceReport]] = {}
        wanted = {str(v) for v in versions if v}
        needs_legacy = [r for r in runs if not any(report_for(r, v) for v in wanted)]
        if needs_legacy and wanted:
            run_ids = {str(mv.version): mv.run_id for mv in all_versions(client, name) if str(mv.version) in wanted}
            fetched = runs_by_id(client, [r for r in run_ids.values() if r])
            self.legacy = {v: device_reports(fetched[rid].data.metrics, fetched[rid].data.tags)
                           for v, rid in run_ids.items() if rid in fetched}

    def get(self, run, device: str, version: str | None) -> DeviceReport | None:
        if not version:
            return None
        report = report_for(run, version) or self.legacy.get(str(version), {}).get(device)
        return report if report and report.is_about(version) else None


@dataclass(frozen=True)
class Fleet:
    rows: list[DeviceRow]
    truncated: bool
    query: Query

    def notes(self) -> list[str]:
        if not self.truncated:
            return []
        return [f"showing the first {len(self.rows)} devices (--limit {self.query.limit}); more exist: "
                "narrow with --version / --status / --device or raise --limit"]


def read(client: MlflowClient, name: str, stale_after: float, query: Query = Query(), now: datetime | None = None,
         max_skew_s: float = contract.CLOCK_SKEW_LIMIT_S) -> Fleet:
    """The devices of ``name`` matching ``query``, sorted by device id, and whether the cap cut the list."""
    rm = registered_model(client, name)
    aliases = {a: str(v) for a, v in (rm.aliases or {}).items()}
    scan = aggregate.device_runs(client, name, *query.clauses(), limit=query.limit)
    runs = scan.runs
    if runs and not query.filtered and not scan.truncated and len(runs) <= aggregate.CHEAP_DEVICES:
        versions = all_versions(client, name)  # cheap: refresh the versions' aggregates on the way
        aggregate.refresh(client, name, versions, runs_by_id(client, [mv.run_id for mv in versions]), aliases,
                          scan=scan)
    reports = _Reports(client, name, runs, [*map(_running_version, runs), *aliases.values()]) if runs else None
    now = now or datetime.now(timezone.utc)
    rows = [_row(run, aliases, reports, stale_after, now, max_skew_s) for run in runs]
    return Fleet(sorted(rows, key=lambda r: r.device), scan.truncated, query)


def collect(client: MlflowClient, name: str, stale_after: float, now: datetime | None = None) -> list[DeviceRow]:
    """One row per device of ``name`` (up to the default cap), sorted by device id."""
    return read(client, name, stale_after, now=now).rows


def _clock_flags(seen: datetime | None, skew: float | None, now: datetime, max_skew_s: float) -> list[str]:
    flags = []
    if skew is not None and abs(skew) > max_skew_s:
        size = next(f"{abs(skew) / unit:.{digits}f} {name}" for limit, unit, name, digits in
                    ((86400 * 365, 86400 * 365, "years", 1), (2 * 86400, 86400, "days", 1), (3000, 3600, "h", 1),
                     (120, 60, "min", 0), (0, 1, "s", 0)) if abs(skew) >= limit)
        flags.append(f"{CLOCK} {'ahead' if skew > 0 else 'behind'} by {size}")
    if seen is not None and (seen - now).total_seconds() > max_skew_s:
        flags.append(f"{CLOCK}: last seen in the future ({seen.isoformat(timespec='seconds')})")
    return flags


def _row(run, aliases: dict[str, str], reports: _Reports, stale_after: float, now: datetime,
         max_skew_s: float) -> DeviceRow:
    tags, metrics = run.data.tags, run.data.metrics
    device = tags.get(contract.TAG_DEVICE_ID, run.info.run_name or run.info.run_id)
    alias = tags.get(contract.TAG_ALIAS, contract.DEFAULT_ALIAS)
    running, target = _running_version(run), aliases.get(alias)
    try:
        interval = float(tags.get(contract.TAG_INTERVAL_S) or DEFAULT_INTERVAL_S)
    except ValueError:
        interval = DEFAULT_INTERVAL_S
    seen, skew = _last_seen(run), _skew(run)
    report = reports.get(run, device, running)
    figures = report.metrics if report else {}

    def figure(key: str) -> float | None:
        return figures.get(key, metrics.get(key))

    flags = _clock_flags(seen, skew, now, max_skew_s)
    if seen is None or (now - seen).total_seconds() > stale_after * interval:
        flags.append(STALE)
    last, refused_target = tags.get(contract.TAG_LAST_STATUS, ""), False
    if last == contract.STATUS_REJECTED:
        refused = reports.get(run, device, target)
        found = refused is not None and refused.status == contract.STATUS_REJECTED
        # The report holds the gate's own reason; the heartbeat's is the whole run message.
        reason = (refused.reason if found else "") or tags.get(contract.TAG_LAST_REASON, "")
        flags.append(f"{REJECTED}{f' v{target}' if found else ''}" + (f" ({reason})" if reason else ""))
        refused_target = found
    elif last not in ("", contract.STATUS_HEALTHY, _BUSY):
        reason = tags.get(contract.TAG_LAST_REASON, "")
        flags.append(f"last run {last}" + (f" ({reason})" if reason else ""))
    if running is None:
        flags.append(NOT_INSTALLED)
    elif target is not None and not refused_target and _older(running, target):  # refusing it is not lagging
        flags.append(f"{BEHIND} (v{running} < v{target})")
    throttled = bool(report and report.throttled) or tags.get(contract.D_THROTTLED) == contract.THROTTLED_YES
    return DeviceRow(device, tags.get(contract.TAG_HOSTNAME, ""), alias, running, target, seen, interval,
                     figure(contract.D_P50), figure(contract.D_P99), figure(contract.D_SAMPLE_ACCURACY), throttled,
                     tuple(flags), run.info.run_id, skew)


def _ago(seen: datetime | None, now: datetime) -> str:
    if seen is None:
        return "never"
    seconds = int((now - seen).total_seconds())
    if seconds < 0:
        return "in the future"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def format_table(rows: list[DeviceRow], now: datetime | None = None, notes: list[str] | None = None) -> str:
    if not rows:
        return (f"no device has reported to the {contract.FLEET_EXPERIMENT!r} experiment for this model yet "
                "(every edgeq-pull run sends a heartbeat there)")
    now = now or datetime.now(timezone.utc)

    def mark(r: DeviceRow) -> str:
        return THROTTLED_MARK if r.throttled else ""

    header = ["device", "hostname", "alias", "runs", "alias at", "last seen", "p50 ms", "p99 ms", "sample acc", "status"]
    body = [
        [r.device, r.hostname or "—", r.alias, f"v{r.running_version}" if r.running_version else "—",
         f"v{r.alias_version}" if r.alias_version else "unset", _ago(r.last_seen, now),
         num(r.p50_ms, ".2f") + mark(r), num(r.p99_ms, ".2f") + mark(r),
         num(r.sample_accuracy, ".3f"), r.status + (", throttled" if r.throttled else "")]
        for r in rows
    ]
    lines = render(header, body, free_last="------")
    counts: dict[str, int] = {}
    for r in rows:  # by each device's first flag, so the counts add up to the devices
        first = (r.flags or (OK,))[0]
        key = next((k for k in (NOT_INSTALLED, "last run", CLOCK) if first.startswith(k)), first.split(" ")[0])
        counts[key] = counts.get(key, 0) + 1
    lines.append("")
    lines.append(f"{len(rows)} device(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if any(r.throttled for r in rows):
        lines.append(THROTTLED_NOTE)
    lines += list(notes or [])
    return "\n".join(lines)
