"""Fleet aggregates per version, from the device runs: on the version's run; their current values on its logged model.

Per-device detail lives in each device's own run (``v<N>.<name>`` keys, edge/report.py); what a
version carries is a fixed handful of ``fleet.*`` metrics — devices healthy / rejected / behind,
median and worst latency (overall and per device class), worst p99, sample accuracy — logged
on the version's run (not linked to its logged model, whose page would list every value a metric
ever had, oldest first), plus one model-version tag (``edgeq.fleet``) that the registered
version's page shows and a section of the logged model's description with each figure's current
value. A metric is logged again only when its value changed, so a timer running ``edgeq aggregate``
adds no rows while the fleet is quiet. Reports in the legacy layout (``device.<id>.*`` on the version's
run) count too, so versions reported before this layout keep their figures.
"""
from __future__ import annotations

import dataclasses
import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from edge import contract, rollout_share
from registry_tools.api import RegistryApi
from registry_tools import evidence
from registry_tools.device_reports import DeviceReport, device_name
from registry_tools.rest_client import error_code, metric

if TYPE_CHECKING:
    from mlflow.entities import Run

DEFAULT_MAX_DEVICES = 200_000  # `edgeq aggregate`: a scan stops here, and says so, rather than run for ever
CHEAP_DEVICES = 100  # versions / fleet / promote --from refresh the aggregates themselves up to this many devices


@dataclass(frozen=True)
class ClassFigures:
    devices: int
    p50_median: float | None
    p50_worst: float | None


@dataclass(frozen=True)
class Aggregate:
    """One version's fleet figures; ``None`` where no device sent the figure."""

    version: str
    reporting: int = 0
    healthy: int = 0
    rejected: int = 0
    behind: int = 0
    throttled: int = 0
    p50_median: float | None = None
    p50_worst: float | None = None
    p99_worst: float | None = None
    acc_median: float | None = None
    acc_worst: float | None = None
    classes: dict[str, ClassFigures] = field(default_factory=dict)
    not_counted: int = 0  # reports that did not vote: unverified, or unsigned where unsigned evidence does not count

    def metrics(self) -> dict[str, float]:
        out = {contract.A_REPORTING: self.reporting, contract.A_HEALTHY: self.healthy, contract.A_REJECTED: self.rejected,
               contract.A_BEHIND: self.behind, contract.A_THROTTLED: self.throttled, contract.A_UNVERIFIED: self.not_counted}
        for key, value in ((contract.A_P50_MEDIAN, self.p50_median), (contract.A_P50_WORST, self.p50_worst),
                           (contract.A_P99_WORST, self.p99_worst), (contract.A_ACC_MEDIAN, self.acc_median),
                           (contract.A_ACC_WORST, self.acc_worst)):
            if value is not None:
                out[key] = value
        for name, c in self.classes.items():
            out[contract.class_key(name, "devices")] = c.devices
            if c.p50_median is not None:
                out[contract.class_key(name, "p50_median_ms")] = c.p50_median
                out[contract.class_key(name, "p50_worst_ms")] = c.p50_worst
        return {k: float(v) for k, v in out.items()}

    @classmethod
    def from_metrics(cls, version: str, metrics: dict[str, float]) -> "Aggregate | None":
        """What ``edgeq aggregate`` last wrote on the version's run, or None when it never did."""
        if contract.A_REPORTING not in metrics:
            return None
        count = lambda key: int(metrics.get(key, 0))  # noqa: E731
        classes: dict[str, dict[str, float]] = {}
        for key, value in metrics.items():
            if key.startswith(contract.A_CLASS_PREFIX):
                name, _, figure = key[len(contract.A_CLASS_PREFIX):].rpartition(".")
                classes.setdefault(name, {})[figure] = value
        return cls(version, count(contract.A_REPORTING), count(contract.A_HEALTHY), count(contract.A_REJECTED),
                   count(contract.A_BEHIND), count(contract.A_THROTTLED), metrics.get(contract.A_P50_MEDIAN),
                   metrics.get(contract.A_P50_WORST), metrics.get(contract.A_P99_WORST), metrics.get(contract.A_ACC_MEDIAN),
                   metrics.get(contract.A_ACC_WORST),
                   {n: ClassFigures(int(f.get("devices", 0)), f.get("p50_median_ms"), f.get("p50_worst_ms"))
                    for n, f in sorted(classes.items())}, count(contract.A_UNVERIFIED))

    def summary(self) -> str:
        """One line: ``12 healthy, 1 rejected, 3 behind; p50 median 3.10 ms (worst 4.20), p99 worst 9.00 ms, …``."""
        head = f"{self.healthy} healthy, {self.rejected} rejected, {self.behind} behind"
        parts = []
        if self.p50_median is not None:
            parts.append(f"p50 median {self.p50_median:.2f} ms (worst {self.p50_worst:.2f})")
        if self.p99_worst is not None:
            parts.append(f"p99 worst {self.p99_worst:.2f} ms")
        if self.acc_median is not None:
            parts.append(f"sample accuracy median {100 * self.acc_median:.1f} % (worst {100 * self.acc_worst:.1f} %)")
        if self.throttled:
            parts.append(f"{self.throttled} throttled")
        if self.not_counted:
            parts.append(f"{self.not_counted} report(s) not counted (unverified or unsigned)")
        return head + ("; " + ", ".join(parts) if parts else "")


def compute(version: str, reports: Iterable[DeviceReport], behind: int = 0) -> Aggregate:
    """The aggregate of the reports about ``version`` (healthy devices' figures only)."""
    healthy, rejected = [], 0
    for r in reports:
        if not r.is_about(version):
            continue
        if r.status == contract.STATUS_REJECTED:
            rejected += 1
        elif r.status == contract.STATUS_HEALTHY:
            healthy.append(r)
    fig = lambda key: [r.metrics[key] for r in healthy if key in r.metrics]  # noqa: E731
    p50, p99, acc = fig(contract.D_P50), fig(contract.D_P99), fig(contract.D_SAMPLE_ACCURACY)
    by_class: dict[str, list[DeviceReport]] = {}
    for r in healthy:
        by_class.setdefault(r.tags.get(contract.D_CPU) or "unknown", []).append(r)
    classes = {}
    for name, members in sorted(by_class.items()):
        values = [r.metrics[contract.D_P50] for r in members if contract.D_P50 in r.metrics]
        classes[name] = ClassFigures(len(members), statistics.median(values) if values else None,
                                     max(values) if values else None)
    return Aggregate(version, len(healthy) + rejected, len(healthy), rejected, behind,
                     sum(1 for r in healthy if r.throttled),
                     statistics.median(p50) if p50 else None, max(p50) if p50 else None, max(p99) if p99 else None,
                     statistics.median(acc) if acc else None, min(acc) if acc else None, classes)


@dataclass(frozen=True)
class Staged:
    """A version rolled out in stages behind an alias: only ``share.percent`` of the alias's devices take it."""

    version: str
    share: rollout_share.Share

    def takes(self, device: str) -> bool:
        """Whether ``device`` is inside the share (the hash every device computes for itself)."""
        try:
            return rollout_share.takes(device, self.version, self.share.percent)
        except ValueError:
            return True  # an id the hash cannot read: judged like any device, not excused

    def note(self) -> str:
        return self.share.outside(self.version)


def staged_rollouts(tags_of: dict[str, dict[str, str]], aliases: dict[str, str]) -> tuple[dict[str, Staged], list[str]]:
    """Alias → its staged rollout, from the tags of the versions behind the aliases (``tags_of``: version → tags);
    and a note for each unreadable rollout tag, which counts as no staged rollout."""
    staged, notes = {}, []
    for alias, version in sorted(aliases.items()):
        try:
            share = rollout_share.share_of(tags_of.get(str(version), {}), alias)
        except ValueError as exc:
            notes.append(f"v{version}'s staged-rollout tag {contract.rollout_tag(alias)!r} is unreadable ({exc}): "
                         f"read as no staged rollout (edgeq rollout status {alias} tells more)")
            continue
        if share is not None:
            staged[alias] = Staged(str(version), share)
    return staged, notes


def running(run: Run, found: evidence.Read, trust: evidence.Trust) -> tuple[str, str] | None:
    """(alias, running version) of a device run: its verified status; its tags only where unsigned evidence counts
    or nothing is enrolled for the model."""
    device = device_name(run.data.tags, run.info.run_id)
    status = found.statuses.get(device)
    if status is not None:
        return status.alias or contract.DEFAULT_ALIAS, status.version
    if trust.enrolled and not trust.accept_unsigned:
        return None
    tags = run.data.tags
    return tags.get(contract.TAG_ALIAS, contract.DEFAULT_ALIAS), tags.get(contract.TAG_RUNNING_VERSION, "")


def behind_by_version(runs: Iterable[Run], aliases: dict[str, str], found: evidence.Read,
                      trust: evidence.Trust, staged: dict[str, Staged] | None = None) -> dict[str, set[str]]:
    """Devices per version that follow an alias pointing at it and run an older version (refusals not yet removed).

    A device outside the share of a staged rollout (``staged``: alias → rollout) keeps the fallback by design: not behind.
    """
    out: dict[str, set[str]] = {}
    for run in runs:
        state = running(run, found, trust)
        if state is None:
            continue
        target, version = aliases.get(state[0]), state[1]
        if not target or not version.isdigit() or int(version) >= int(target):
            continue
        device = device_name(run.data.tags, run.info.run_id)
        rollout = (staged or {}).get(state[0])
        if rollout is not None and rollout.version == target and not rollout.takes(device):
            continue
        out.setdefault(target, set()).add(device)
    return out


RUN_DELETED = "run deleted"
RUN_MISSING = "run missing"


def run_gone(mv, version_runs: dict[str, Run]) -> str:
    """Why the version's run cannot carry its aggregates ("run deleted" in the MLflow UI, or purged), or ""."""
    if not mv.run_id:
        return ""
    run = version_runs.get(mv.run_id)
    if run is None:
        return RUN_MISSING
    return RUN_DELETED if run.info.lifecycle_stage == "deleted" else ""


def skipped_note(skipped: dict[str, str]) -> str:
    """One line naming the versions whose runs are gone: nothing is aggregated or written for them."""
    if not skipped:
        return ""
    listed = ", ".join(f"v{v} ({why})" for v, why in sorted(skipped.items(), key=lambda kv: int(kv[0])))
    return f"skipped {listed}: no aggregates are kept for a version whose run is gone"


@dataclass(frozen=True)
class Refresh:
    aggregates: dict[str, Aggregate]  # by version, only versions with evidence
    devices: int  # device runs read
    truncated: bool
    written: tuple[str, ...] = ()  # versions whose stored aggregates changed
    trust_notes: tuple[str, ...] = ()  # what counted that a person must know (unsigned, unverified)
    skipped: dict[str, str] = field(default_factory=dict)  # version → why its run cannot carry aggregates

    def note(self) -> str:
        if self.truncated:
            return (f"aggregates not refreshed: more than {self.devices} device runs (the cap); "
                    "run `edgeq aggregate MODEL --max-devices N` beside the server")
        return "; ".join(self.trust_notes)


def refresh(client: RegistryApi, model: str, versions: list, version_runs: dict[str, Run], aliases: dict[str, str],
            limit: int = DEFAULT_MAX_DEVICES, write: bool = True, scan: evidence.Scan | None = None,
            trust: evidence.Trust | None = None) -> Refresh:
    """Aggregates of every version of ``model`` from one scan of its device runs (and legacy reports), verified by
    the evidence reader and written where they changed. Nothing is computed or written when the scan stops at
    ``limit``. ``scan``: all the model's device runs, already read by the caller with ``trust``."""
    trust = trust or evidence.trust_for(client, model)
    scan = scan if scan is not None else evidence.device_runs(client, trust, limit=limit)
    if scan.truncated:
        return Refresh({}, len(scan.runs), True)
    found = evidence.read_runs(scan.runs, trust)
    for mv in versions:
        run = version_runs.get(mv.run_id) if mv.run_id else None
        if run is not None:
            evidence.add_legacy(found, trust, str(mv.version), run.data.metrics, run.data.tags)
    staged, staged_notes = staged_rollouts({str(mv.version): dict(mv.tags or {}) for mv in versions}, aliases)
    behind = behind_by_version(scan.runs, aliases, found, trust, staged)
    aggregates, written, skipped = {}, [], {}
    for mv in versions:
        version = str(mv.version)
        run = version_runs.get(mv.run_id) if mv.run_id else None
        if run_gone(mv, version_runs):
            skipped[version] = run_gone(mv, version_runs)
            continue
        reports = found.reports.get(version, {})
        stored = run.data.metrics if run is not None else {}
        # Refusing the version is not lagging behind it.
        lagging = {d for d in behind.get(version, set())
                   if not (d in reports and reports[d].status == contract.STATUS_REJECTED)}
        not_counted = found.unverified_count(version) + (0 if trust.accept_unsigned else found.unsigned_count(version))
        if not reports and not lagging and not not_counted and contract.A_REPORTING not in stored:
            continue
        agg = dataclasses.replace(compute(version, reports.values(), len(lagging)), not_counted=not_counted)
        aggregates[version] = agg
        if write and run is not None and store(client, mv, stored, agg):
            written.append(version)
    notes = tuple(trust.notes(found.unsigned_count(), found.unverified_count())) + tuple(staged_notes)
    return Refresh(aggregates, len(scan.runs), False, tuple(written), notes, skipped)


def logged_model_id(mv) -> str | None:
    """The version's logged model: its ``model_id``, or (as the SQL store keeps it) its ``models:/<id>`` source."""
    source = getattr(mv, "source", "") or ""
    return getattr(mv, "model_id", None) or (source[len("models:/"):] if source.startswith("models:/m-") else None)


def store(client: RegistryApi, mv, stored: dict[str, float], agg: Aggregate) -> bool:
    """Log the aggregates that changed on the version's run; tag the version; rewrite its logged model's fleet section."""
    now = int(time.time() * 1000)
    changed = {k: v for k, v in agg.metrics().items() if stored.get(k) != v}
    # A class or figure that disappeared (its devices moved on) reads 0 devices rather than a stale count.
    changed.update({k: 0.0 for k in stored if k.startswith(contract.A_CLASS_PREFIX) and k.endswith(".devices")
                    and k not in agg.metrics() and stored[k] != 0.0})
    if changed:
        # Not linked to the logged model: its page lists every value a linked metric ever had, oldest first.
        client.log_batch(mv.run_id, metrics=[metric(client, k, v, now) for k, v in changed.items()])
    summary = agg.summary()
    if changed or (getattr(mv, "tags", None) or {}).get(contract.TAG_FLEET_SUMMARY) != summary:
        at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        client.set_model_version_tag(mv.name, mv.version, contract.TAG_FLEET_SUMMARY, summary)
        client.set_model_version_tag(mv.name, mv.version, contract.TAG_FLEET_AGGREGATED_AT, at)
        model_id = logged_model_id(mv)
        if model_id:
            describe(client, model_id, agg, at)
    return bool(changed)


NOTE_TAG = "mlflow.note.content"  # MLflow's description of a logged model, shown at the top of its page
FLEET_HEADING = "#### Fleet, as `edgeq aggregate` last saw it"


def fleet_section(agg: Aggregate, at: str) -> str:
    """The aggregates as markdown: the one-line summary and each figure once, its current value."""
    rows = [f"| `{key}` | {value:g} |" for key, value in sorted(agg.metrics().items())]
    return "\n".join([FLEET_HEADING, "", f"{agg.summary()} (at {at.replace('T', ' ').replace('+00:00', ' UTC')})", "",
                      "| figure | now |", "|---|---|", *rows])


def describe(client: RegistryApi, model_id: str, agg: Aggregate, at: str) -> None:
    """Replace the fleet section (always the last part) of the logged model's description; the rest is the user's."""
    try:
        note = (client.get_logged_model(model_id).tags or {}).get(NOTE_TAG, "")
    except Exception as exc:  # MlflowException or rest_client.ApiError
        if error_code(exc) == "RESOURCE_DOES_NOT_EXIST":
            return  # the logged model was deleted: the version's run and tags still carry the figures
        raise
    own = note.partition(FLEET_HEADING)[0].rstrip()
    client.set_logged_model_tags(model_id, {NOTE_TAG: (own + "\n\n" if own else "") + fleet_section(agg, at)})
