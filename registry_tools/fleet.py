"""The fleet view: every device running a model, what it runs, when it was last seen, and whether that is fine.

Reads the device runs of the fleet experiment (one per model and device, docs/fleet.md)
through a server-side filter, page by page, up to a cap it names when it stops there. A
device's figures and verdicts come from its own run (``v<N>.*`` keys); only a device that
reported in the legacy layout sends the view to that version's run. "Last seen" is the run's
end time, which the device stamps with the server's time (edge/clock.py): a wrong device clock
neither makes it look fresh nor stale, and is flagged.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from edge import contract
from registry_tools.api import RegistryApi
from registry_tools import aggregate, evidence
from registry_tools.device_reports import DeviceReport
from registry_tools.runs import runs_by_id
from registry_tools.table import THROTTLED_MARK, THROTTLED_NOTE, Column, num, percent, render, wrap
from registry_tools.lookup import all_versions, model_version, registered_model


DEFAULT_INTERVAL_S = contract.DEFAULT_INTERVAL_MINUTES * 60  # for devices that do not say how often they run
DEFAULT_LIMIT = 200  # devices listed unless --limit says otherwise: a page a person reads, in ~1 s

OK, STALE, BEHIND, REJECTED, NOT_INSTALLED = "ok", "stale", "behind", "rejected", "nothing installed"
OFF = "not on its alias"  # runs a newer version than its alias points to (the alias was moved back by number)
UNSIGNED_FLAG = "unsigned"  # the fleet is enrolled but this run carries no verified status: its tags are not evidence
UNVERIFIED_FLAG = "unverified"  # the run carries statements that failed verification (forged, revoked, not enrolled)
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
    notes: tuple[str, ...] = ()  # fine, but worth saying: e.g. "outside the 5 % stage of v7"

    @property
    def status(self) -> str:
        return (", ".join(self.flags) or OK) + (f" ({'; '.join(self.notes)})" if self.notes else "")

    def as_dict(self) -> dict:
        return {
            "device": self.device, "hostname": self.hostname, "alias": self.alias,
            "running_version": self.running_version, "alias_version": self.alias_version,
            "last_seen": self.last_seen.isoformat(timespec="seconds") if self.last_seen else None,
            "interval_s": self.interval_s, "latency_p50_ms": self.p50_ms, "latency_p99_ms": self.p99_ms,
            "sample_accuracy": self.sample_accuracy, "throttled": self.throttled, "status": self.status,
            "flags": list(self.flags), "run_id": self.run_id, "clock_skew_s": self.clock_skew_s,
            "notes": list(self.notes),
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
            out.append(f"tags.`{contract.TAG_LAST_STATUS}` = {evidence.quote(self.status)}")
        if self.device:
            out.append(f"tags.`{contract.TAG_DEVICE_ID}` = {evidence.quote(contract.sanitize_device_id(self.device))}")
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


@dataclass(frozen=True)
class _State:
    """What a device run says about its device, from its verified status when it has one."""

    device: str
    alias: str
    running: str | None
    last: str
    reason: str
    signed: bool


def _state(run, found: evidence.Read) -> _State:
    tags, metrics = run.data.tags, run.data.metrics
    device = tags.get(contract.TAG_DEVICE_ID) or run.data.params.get(contract.P_DEVICE_ID) or run.info.run_name or run.info.run_id
    status = found.statuses.get(device)
    if status is not None and found.run_of.get(device) == run.info.run_id:
        return _State(device, status.alias or contract.DEFAULT_ALIAS, status.version or None, status.verdict,
                      status.reason, True)
    metric = metrics.get(contract.M_RUNNING_VERSION)
    running = tags.get(contract.TAG_RUNNING_VERSION) or (str(int(metric)) if metric else None)
    return _State(device, tags.get(contract.TAG_ALIAS, contract.DEFAULT_ALIAS), running,
                  tags.get(contract.TAG_LAST_STATUS, ""), tags.get(contract.TAG_LAST_REASON, ""), False)


@dataclass(frozen=True)
class Fleet:
    rows: list[DeviceRow]
    truncated: bool
    query: Query
    trust_notes: tuple[str, ...] = ()

    def notes(self) -> list[str]:
        out = list(self.trust_notes)
        if self.truncated:
            out.append(f"showing the first {len(self.rows)} devices (--limit {self.query.limit}); more exist: "
                       "narrow with --running / --last-status / --device-id or raise --limit")
        return out


def read(client: RegistryApi, name: str, stale_after: float, query: Query = Query(), now: datetime | None = None,
         max_skew_s: float = contract.CLOCK_SKEW_LIMIT_S, accept_unsigned: bool = False) -> Fleet:
    """The devices of ``name`` matching ``query``, sorted by device id, and whether the cap cut the list."""
    rm = registered_model(client, name)
    aliases = {a: str(v) for a, v in (rm.aliases or {}).items()}
    trust = evidence.trust_for(client, name, accept_unsigned)
    scan = evidence.device_runs(client, trust, *query.clauses(), limit=query.limit)
    runs = scan.runs
    found = evidence.read_runs(runs, trust)
    notes: tuple[str, ...] = ()
    if runs and not query.filtered and not scan.truncated and len(runs) <= aggregate.CHEAP_DEVICES:
        versions = all_versions(client, name)  # cheap: refresh the versions' aggregates on the way
        fresh = aggregate.refresh(client, name, versions, runs_by_id(client, [mv.run_id for mv in versions]), aliases,
                                  scan=scan, trust=trust)
        notes = tuple(fresh.trust_notes)
    elif runs:
        notes = tuple(trust.notes(found.unsigned_count(), found.unverified_count()))
    if runs and not all(_state(r, found).signed for r in runs):
        _add_legacy(client, name, found, trust, {*(aliases.values()), *(_state(r, found).running for r in runs)})
    staged, unreadable = _staged(client, name, aliases) if runs else ({}, [])
    now = now or datetime.now(timezone.utc)
    rows = [_row(run, aliases, found, trust, stale_after, now, max_skew_s, staged) for run in runs]
    return Fleet(sorted(rows, key=lambda r: r.device), scan.truncated, query,
                 notes + tuple(n for n in unreadable if n not in notes))


def _staged(client: RegistryApi, name: str, aliases: dict[str, str]) -> tuple[dict[str, aggregate.Staged], list[str]]:
    """The staged rollouts behind the aliases, from the tags of the versions they point at (one request per alias)."""
    tags = {v: dict(model_version(client, name, v).tags or {}) for v in set(aliases.values())}
    return aggregate.staged_rollouts(tags, aliases)


def _add_legacy(client: RegistryApi, name: str, found: evidence.Read, trust: evidence.Trust, versions: set) -> None:
    """Reports of devices from before the fleet layout, on the versions' own runs (unsigned: shown as such)."""
    wanted = {str(v) for v in versions if v}
    run_ids = {str(mv.version): mv.run_id for mv in all_versions(client, name) if str(mv.version) in wanted and mv.run_id}
    fetched = runs_by_id(client, list(run_ids.values()))
    for version, run_id in run_ids.items():
        if run_id in fetched:
            evidence.add_legacy(found, trust, version, fetched[run_id].data.metrics, fetched[run_id].data.tags)


def collect(client: RegistryApi, name: str, stale_after: float, now: datetime | None = None) -> list[DeviceRow]:
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


def _row(run, aliases: dict[str, str], found: evidence.Read, trust: evidence.Trust, stale_after: float,
         now: datetime, max_skew_s: float, staged: dict[str, aggregate.Staged] | None = None) -> DeviceRow:
    tags, metrics = run.data.tags, run.data.metrics
    state = _state(run, found)
    running, target = state.running, aliases.get(state.alias)
    notes: tuple[str, ...] = ()
    rollout = (staged or {}).get(state.alias)
    if rollout is not None and rollout.version == target and running is not None \
            and (running == rollout.share.fallback or _older(running, rollout.share.fallback)) \
            and not rollout.takes(state.device):
        # Outside the share the device is meant to keep the fallback: that, not the alias's version, is its target.
        target, notes = rollout.share.fallback, (rollout.note(),)
    interval = _seconds(tags, contract.TAG_INTERVAL_S, DEFAULT_INTERVAL_S)
    # A quiet device moves its last seen once per heartbeat interval, not every run.
    beat = max(interval, _seconds(tags, contract.TAG_HEARTBEAT_S, 0.0))
    seen, skew = _last_seen(run), _skew(run)

    def report_on(version: str | None) -> DeviceReport | None:
        if not version:
            return None
        return found.reports.get(str(version), {}).get(state.device) or found.unsigned.get(str(version), {}).get(state.device)

    report = report_on(running)
    figures = report.metrics if report else {}
    flags = _clock_flags(seen, skew, now, max_skew_s)
    bad = [u.why for u in found.unverified if u.run_id == run.info.run_id]
    if bad:
        flags.append(f"{UNVERIFIED_FLAG} ({len(bad)}: {bad[0]})")
    elif not state.signed and trust.enrolled:
        flags.append(UNSIGNED_FLAG)
    if seen is None or (now - seen).total_seconds() > stale_after * beat:
        flags.append(STALE)
    on_target = running is not None and target is not None and running == target
    if state.last == contract.STATUS_REJECTED and not on_target:
        refused = report_on(target)
        found_it = refused is not None and refused.status == contract.STATUS_REJECTED
        # The report holds the gate's own reason; the heartbeat's is the whole run message.
        reason = (refused.reason if found_it else "") or state.reason
        flags.append(f"{REJECTED}{f' v{target}' if found_it else ''}" + (f" ({reason})" if reason else ""))
    elif state.last not in ("", contract.STATUS_HEALTHY, _BUSY, contract.STATUS_REJECTED):
        flags.append(f"last run {state.last}" + (f" ({state.reason})" if state.reason else ""))
    if running is None:
        flags.append(NOT_INSTALLED)
    elif target is not None and running != target and state.last != contract.STATUS_REJECTED:
        flags.append(f"{BEHIND} (v{running} < v{target})" if _older(running, target) else f"{OFF} (runs v{running}, {state.alias} is v{target})")
    throttled = bool(report and report.throttled) or (not state.signed and tags.get(contract.D_THROTTLED) == contract.THROTTLED_YES)
    p50 = figures.get(contract.D_P50, None if state.signed else metrics.get(contract.D_P50))
    p99 = figures.get(contract.D_P99, None if state.signed else metrics.get(contract.D_P99))
    acc = figures.get(contract.D_SAMPLE_ACCURACY, None if state.signed else metrics.get(contract.D_SAMPLE_ACCURACY))
    return DeviceRow(state.device, tags.get(contract.TAG_HOSTNAME, ""), state.alias, running, aliases.get(state.alias),
                     seen, interval, p50, p99, acc, throttled, tuple(flags), run.info.run_id, skew, notes)


def _seconds(tags: dict[str, str], key: str, default: float) -> float:
    try:
        return float(tags.get(key) or default)
    except ValueError:
        return default


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


def format_table(rows: list[DeviceRow], now: datetime | None = None, notes: list[str] | None = None,
                 width: int | None = None) -> str:
    """One line per device, the status last. ``width``: fit that many columns (the status cut with "…", figures and
    the hostname left out first; device, alias, version and last seen stay); None: everything."""
    if not rows:
        return "\n".join(wrap([f"no device has reported to the {contract.FLEET_EXPERIMENT!r} experiment for this model "
                                "yet (every edgeq-pull run sends a heartbeat there)"], width))
    now = now or datetime.now(timezone.utc)

    def mark(r: DeviceRow) -> str:
        return THROTTLED_MARK if r.throttled else ""

    header = [Column("device"), Column("hostname", drop=5), Column("alias"), Column("runs"), Column("alias at", drop=1),
              Column("last seen", "seen"), Column("p50 ms", "p50", drop=2), Column("p99 ms", "p99", drop=4),
              Column("sample acc %", "acc %", drop=3), Column("status")]
    body = [
        [r.device, r.hostname or "—", r.alias, f"v{r.running_version}" if r.running_version else "—",
         f"v{r.alias_version}" if r.alias_version else "unset", _ago(r.last_seen, now),
         num(r.p50_ms, ".2f") + mark(r), num(r.p99_ms, ".2f") + mark(r),
         percent(r.sample_accuracy), r.status + (", throttled" if r.throttled else "")]
        for r in rows
    ]
    lines = render(header, body, free_last="------", width=width)
    counts: dict[str, int] = {}
    for r in rows:  # by each device's first flag, so the counts add up to the devices
        first = (r.flags or (OK,))[0]
        key = next((k for k in (NOT_INSTALLED, "last run", CLOCK) if first.startswith(k)), first.split(" ")[0])
        counts[key] = counts.get(key, 0) + 1
    prose = [f"{len(rows)} device(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items()))]
    if any(r.throttled for r in rows):
        prose.append(THROTTLED_NOTE)
    return "\n".join(lines + [""] + wrap(prose + list(notes or []), width))
