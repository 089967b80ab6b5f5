"""The fleet view: every device running a model, what it runs, when it was last seen, and whether that is fine.

Reads the fleet experiment (one run per model and device, see the README's Decisions)
with one search, the registered model's aliases, and the runs of the few versions the
devices run or refused, for the figures each device reported there.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone

from mlflow.entities import ViewType
from mlflow.tracking import MlflowClient

from edge import contract
from registry_tools.device_reports import DeviceReport, device_reports
from registry_tools.runs import runs_by_id
from registry_tools.table import THROTTLED_MARK, THROTTLED_NOTE, num, render
from registry_tools.versions import all_versions, registered_model

DEFAULT_INTERVAL_S = contract.DEFAULT_INTERVAL_MINUTES * 60  # for devices that do not say how often they run
_PAGE = 1000
_MAX_PAGES = 50

OK, STALE, BEHIND, REJECTED, NOT_INSTALLED = "ok", "stale", "behind", "rejected", "nothing installed"
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
            "flags": list(self.flags), "run_id": self.run_id,
        }


def fleet_runs(client: MlflowClient, name: str) -> list:
    """The device runs of ``name`` in the fleet experiment (one search per 1000 devices)."""
    experiment = client.get_experiment_by_name(contract.FLEET_EXPERIMENT)
    if experiment is None:
        return []
    query = f"tags.`{contract.TAG_ROLE}` = '{contract.ROLE_DEVICE}'"
    if "'" not in name:
        query += f" and tags.`{contract.TAG_MODEL}` = '{name}'"
    runs, token = [], None
    for _ in range(_MAX_PAGES):
        page = client.search_runs([experiment.experiment_id], query, ViewType.ACTIVE_ONLY, _PAGE, page_token=token)
        runs += [r for r in page if r.data.tags.get(contract.TAG_MODEL) == name]
        token = page.token
        if not token:
            break
    return runs


def _last_seen(run) -> datetime | None:
    # search_runs returns each metric's latest value with its timestamp; the heartbeat's is "last seen".
    stamps = {m.key: m.timestamp for m in getattr(run.data, "_metric_objs", [])}
    ms = stamps.get(contract.M_HEARTBEAT) or max(stamps.values(), default=None) or run.info.start_time
    return datetime.fromtimestamp(ms / 1000, timezone.utc) if ms else None


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


class _VersionReports:
    """Device reports on the version runs the fleet needs, read in a few batched requests."""

    def __init__(self, client: MlflowClient, name: str, versions: Iterable[str | None]):
        run_ids = {str(mv.version): mv.run_id for mv in all_versions(client, name)}
        self.run_ids = {v: run_ids[v] for v in {str(v) for v in versions if v} if run_ids.get(v)}
        runs = runs_by_id(client, self.run_ids.values())
        self.reports = {run_id: device_reports(run.data.metrics, run.data.tags) for run_id, run in runs.items()}

    def get(self, version: str | None, device: str) -> DeviceReport | None:
        run_id = self.run_ids.get(str(version)) if version else None
        report = self.reports.get(run_id, {}).get(device) if run_id else None
        return report if report and report.is_about(version) else None


def collect(client: MlflowClient, name: str, stale_after: float, now: datetime | None = None) -> list[DeviceRow]:
    """One row per device of ``name``, sorted by device id."""
    aliases = {a: str(v) for a, v in (registered_model(client, name).aliases or {}).items()}
    runs = fleet_runs(client, name)
    reports = _VersionReports(client, name, [*map(_running_version, runs), *aliases.values()]) if runs else None
    now = now or datetime.now(timezone.utc)
    rows = [_row(run, aliases, reports, stale_after, now) for run in runs]
    return sorted(rows, key=lambda r: r.device)


def _row(run, aliases: dict[str, str], reports: _VersionReports, stale_after: float, now: datetime) -> DeviceRow:
    tags, metrics = run.data.tags, run.data.metrics
    device = tags.get(contract.TAG_DEVICE_ID, run.info.run_name or run.info.run_id)
    alias = tags.get(contract.TAG_ALIAS, contract.DEFAULT_ALIAS)
    running, target = _running_version(run), aliases.get(alias)
    try:
        interval = float(tags.get(contract.TAG_INTERVAL_S) or DEFAULT_INTERVAL_S)
    except ValueError:
        interval = DEFAULT_INTERVAL_S
    seen = _last_seen(run)
    report = reports.get(running, device)
    figures = report.metrics if report else {}

    def figure(key: str) -> float | None:
        return figures.get(key, metrics.get(key))

    flags = []
    if seen is None or (now - seen).total_seconds() > stale_after * interval:
        flags.append(STALE)
    last, refused_target = tags.get(contract.TAG_LAST_STATUS, ""), False
    if last == contract.STATUS_REJECTED:
        refused = reports.get(target, device)
        found = refused is not None and refused.status == contract.STATUS_REJECTED
        # The version run holds the gate's own reason; the heartbeat's is the whole run message.
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
                     tuple(flags), run.info.run_id)


def _ago(seen: datetime | None, now: datetime) -> str:
    if seen is None:
        return "never"
    seconds = max(0, int((now - seen).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit} ago"
    return f"{seconds}s ago"


def format_table(rows: list[DeviceRow], now: datetime | None = None) -> str:
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
        key = next((k for k in (NOT_INSTALLED, "last run") if first.startswith(k)), first.split(" ")[0])
        counts[key] = counts.get(key, 0) + 1
    lines.append("")
    lines.append(f"{len(rows)} device(s): " + ", ".join(f"{n} {k}" for k, n in sorted(counts.items())))
    if any(r.throttled for r in rows):
        lines.append(THROTTLED_NOTE)
    return "\n".join(lines)
