"""One `edgeq aggregate` pass: only device runs whose end time moved since the last pass, streamed a page at a time.

The pass keeps its watermark on the server, as a registered-model tag (contract.TAG_AGGREGATE_WATERMARK: the
time the last pass started, the aliases and the staged-rollout shares it saw), so any machine can run the next one. It reads the device
runs whose end time is past the watermark (less a margin for a device's clock and requests in flight),
verifying them through the evidence reader a page at a time. A version is *touched* when one of them carries a
report on it stated since the watermark, or an alias moved to or from it; each touched version's aggregates are
recomputed from the runs that reported on it (its ``v<N>.evidence`` marker), again a page at a time, reduced to
the few figures an aggregate needs. A version's figures are totals and medians over its devices, so they are
recomputed, not patched: the cost of a pass is the runs that changed plus the reporters of the versions they
touched, never the whole fleet's runs at once. "Behind" (devices following an alias whose target they do not
run yet, less those a staged rollout keeps on its fallback) needs every device's status: it is recounted only
when an alias target is touched, or the share of its staged rollout changed. ``--full`` recomputes
every version in one scan of all runs (a first pass does that by itself).
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING

from edge import contract
from registry_tools.api import RegistryApi
from registry_tools import evidence
from registry_tools.aggregate import (Aggregate, Staged, behind_by_version, compute, run_gone, skipped_note,
                                      staged_rollouts, store)
from registry_tools.device_reports import SIGNED, DeviceReport

if TYPE_CHECKING:
    from mlflow.entities import Run

MARGIN_MS = 300_000  # runs ending this long before the watermark are read again: clocks and requests in flight
_FIGURES = (contract.D_P50, contract.D_P99, contract.D_SAMPLE_ACCURACY)
_KEPT_TAGS = (contract.D_STATUS, contract.D_CPU, contract.D_THROTTLED, contract.D_MODEL_VERSION)


@dataclass(frozen=True)
class Watermark:
    at_ms: int | None = None  # when the last pass started; None: no pass yet
    aliases: dict[str, str] = field(default_factory=dict)  # alias → version, as that pass saw them
    every_s: float = contract.DEFAULT_AGGREGATE_EVERY_MINUTES * 60  # the timer's interval, for staleness
    stages: dict[str, str] = field(default_factory=dict)  # alias → "version:percent" of its staged rollout, if any

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> "Watermark":
        try:
            data = json.loads(tags.get(contract.TAG_AGGREGATE_WATERMARK, ""))
            return cls(int(data["at_ms"]), {str(k): str(v) for k, v in data.get("aliases", {}).items()},
                       float(data.get("every_s", cls.every_s)),
                       {str(k): str(v) for k, v in data.get("stages", {}).items()})
        except (ValueError, KeyError, TypeError, AttributeError):
            return cls()  # none, or unreadable: the next pass is a full one

    def value(self) -> str:
        return json.dumps({"at_ms": self.at_ms, "aliases": self.aliases, "every_s": self.every_s, "stages": self.stages},
                          sort_keys=True)

    def age_s(self, now_ms: int | None = None) -> float | None:
        return None if self.at_ms is None else ((now_ms or _now_ms()) - self.at_ms) / 1000

    def stale(self, now_ms: int | None = None) -> bool:
        """Older than the timer's interval and half of it again (a pass that runs a little late is not stale)."""
        age = self.age_s(now_ms)
        return age is None or age > 1.5 * self.every_s


@dataclass(frozen=True)
class Pass:
    aggregates: dict[str, Aggregate]  # the touched versions' (all versions with evidence in a full pass)
    changed_runs: int  # device runs whose end time moved since the watermark (0 in a full pass: it reads them all)
    reporter_runs: int  # runs read to recompute the touched versions
    status_runs: int  # runs read to recount "behind" (0 unless an alias target was touched)
    full: bool
    written: tuple[str, ...] = ()
    trust_notes: tuple[str, ...] = ()  # what a person must know: unsigned or unverified evidence, skipped versions
    truncated: bool = False  # more runs than --max-devices: nothing written
    skipped: dict[str, str] = field(default_factory=dict)  # version → why its run cannot carry aggregates

    @property
    def runs_read(self) -> int:
        return self.changed_runs + self.reporter_runs + self.status_runs


def run(client: RegistryApi, model: str, versions: list, version_runs: dict[str, Run], aliases: dict[str, str],
        trust: evidence.Trust, tags: dict[str, str], *, write: bool = True, full: bool = False,
        every_s: float = contract.DEFAULT_AGGREGATE_EVERY_MINUTES * 60, limit: int | None = None) -> Pass:
    """One pass over ``model``: recompute and store the touched versions' aggregates, then move the watermark."""
    started = _now_ms()
    mark = Watermark.from_tags(tags)
    full = full or mark.at_ms is None
    counter = _Counter(limit)
    known = {str(mv.version): mv for mv in versions}
    staged, staged_notes = staged_rollouts({v: dict(mv.tags or {}) for v, mv in known.items()}, aliases)
    stages = {a: f"{r.version}:{r.share.percent:g}" for a, r in staged.items()}
    if full:
        touched, changed, unsigned_seen = {str(mv.version) for mv in versions}, 0, 0
    else:
        touched, changed, unsigned_seen = _touched(client, trust, mark.at_ms - MARGIN_MS, counter)
        moved = {a for a in {*aliases, *mark.aliases} if aliases.get(a) != mark.aliases.get(a)}
        touched |= {v for a in moved for v in (aliases.get(a), mark.aliases.get(a)) if v}
        # A stage that grew (or a rollout that began or ended) changes who is behind the alias's version.
        touched |= {aliases[a] for a in {*stages, *mark.stages} if a in aliases and stages.get(a) != mark.stages.get(a)}
    # A version whose run was deleted (the MLflow UI, a clean-up script) is skipped: logging to it would fail.
    skipped = {v: why for v, mv in known.items() if (why := run_gone(mv, version_runs))}
    touched &= set(known) - set(skipped)
    targets = touched & set(aliases.values())
    if full:  # one scan of every device run: all versions' reporters and every device's status at once
        tally = _scan(evidence.device_run_pages(client, trust), trust, touched, aliases, counter, staged)
        reporter_runs, status_runs = tally.read, 0
    else:
        tally = (_scan(evidence.device_run_pages(client, trust), trust, set(), aliases, counter, staged) if targets
                 else _Tally())
        status_runs, reporter_runs = tally.read, 0
        for version in sorted(touched, key=int):
            one = _scan(evidence.device_run_pages(client, trust, version=version), trust, {version}, None, counter)
            tally.merge(one)
            reporter_runs += one.read
    aggregates, written, not_counted_all = {}, [], 0
    for version in sorted(touched, key=int):
        mv = known[version]
        run_ = version_runs.get(mv.run_id) if mv.run_id else None
        reports, unsigned, unverified = tally.of(version, trust, run_)
        unsigned_seen += unsigned
        not_counted_all += unverified
        stored = run_.data.metrics if run_ is not None else {}
        lagging = {d for d in tally.behind.get(version, set())
                   if not (d in reports and reports[d].status == contract.STATUS_REJECTED)}
        not_counted = unverified + (0 if trust.accept_unsigned else unsigned)
        if not reports and not lagging and not not_counted and contract.A_REPORTING not in stored:
            continue
        agg = dataclasses.replace(compute(version, reports.values(), len(lagging)), not_counted=not_counted)
        aggregates[version] = agg
        if write and not counter.over and run_ is not None and store(client, mv, stored, agg):
            written.append(version)
    notes = (tuple(trust.notes(unsigned_seen, not_counted_all)) + ((skipped_note(skipped),) if skipped else ())
             + tuple(staged_notes))
    if counter.over:
        return Pass({}, changed, reporter_runs, status_runs, full, (), notes, True, skipped)
    if write:
        client.set_registered_model_tag(model, contract.TAG_AGGREGATE_WATERMARK,
                                        Watermark(started, dict(aliases), every_s, stages).value())
        client.set_registered_model_tag(model, contract.TAG_AGGREGATE_PASS_AT,
                                        datetime.now(timezone.utc).isoformat(timespec="seconds"))
    return Pass(aggregates, changed, reporter_runs, status_runs, full, tuple(written), notes, False, skipped)


class _Counter:
    """Runs read in this pass, against --max-devices."""

    def __init__(self, limit: int | None):
        self.limit, self.read = limit, 0

    def add(self, n: int) -> None:
        self.read += n

    @property
    def over(self) -> bool:
        return self.limit is not None and self.read > self.limit


def _touched(client: RegistryApi, trust: evidence.Trust, since_ms: int, counter: _Counter) -> tuple[set[str], int, int]:
    """(versions with a report stated since ``since_ms`` in a run that ended since then, runs read, unsigned seen)."""
    touched: set[str] = set()
    changed = unsigned = 0
    for page in evidence.device_run_pages(client, trust, f"attributes.end_time > {int(since_ms)}"):
        changed += len(page)
        counter.add(len(page))
        found = evidence.read_runs(page, trust)
        for version, reports in found.reports.items():
            if any(not r.at_ms or r.at_ms > since_ms for r in reports.values()):
                touched.add(version)
        touched |= set(found.unsigned) | {u.version for u in found.unverified if u.version}
        unsigned += found.unsigned_count()
        if counter.over:
            break
    return touched, changed, unsigned


def _slim(report: DeviceReport) -> DeviceReport:
    """What an aggregate reads of a report, and nothing more: a pass over many devices stays small."""
    return DeviceReport(report.device, {k: report.metrics[k] for k in _FIGURES if k in report.metrics},
                        {k: report.tags[k] for k in _KEPT_TAGS if k in report.tags}, report.trust, report.seq)


@dataclass
class _Tally:
    """What a scan found, per version: each device's newest vote (slimmed), the unsigned and unverified reports;
    and, when asked, the devices behind each alias target."""

    votes: dict[str, dict[str, DeviceReport]] = field(default_factory=dict)
    unsigned: dict[str, set[str]] = field(default_factory=dict)
    unverified: dict[str, int] = field(default_factory=dict)
    behind: dict[str, set[str]] = field(default_factory=dict)
    read: int = 0

    def vote(self, version: str, device: str, report: DeviceReport) -> None:
        votes = self.votes.setdefault(version, {})
        if device not in votes or report.seq > votes[device].seq:
            votes[device] = _slim(report)

    def merge(self, other: "_Tally") -> None:
        for version, votes in other.votes.items():
            for device, report in votes.items():
                self.vote(version, device, report)
        for version, devices in other.unsigned.items():
            self.unsigned.setdefault(version, set()).update(devices)
        for version, count in other.unverified.items():
            self.unverified[version] = self.unverified.get(version, 0) + count

    def of(self, version: str, trust: evidence.Trust, version_run: Run | None) -> tuple[dict[str, DeviceReport], int, int]:
        """(device → its vote on ``version``, unsigned reports, unverified reports), the legacy layout on the
        version's own run included."""
        votes = dict(self.votes.get(version, {}))
        unsigned = set(self.unsigned.get(version, set()))
        if version_run is not None:
            legacy = evidence.Read()
            evidence.add_legacy(legacy, trust, version, version_run.data.metrics, version_run.data.tags)
            for device, report in legacy.reports.get(version, {}).items():
                votes.setdefault(device, _slim(report))
            unsigned |= set(legacy.unsigned.get(version, {}))
        unsigned -= {d for d, r in votes.items() if r.trust == SIGNED}
        return dict(sorted(votes.items())), len(unsigned), self.unverified.get(version, 0)


def _scan(pages: Iterable[list[Run]], trust: evidence.Trust, versions: set[str], aliases: dict[str, str] | None,
          counter: _Counter, staged: dict[str, Staged] | None = None) -> _Tally:
    """Verify the runs a page at a time; keep the votes on ``versions`` and (with ``aliases``) who is behind."""
    tally = _Tally()
    for page in pages:
        tally.read += len(page)
        counter.add(len(page))
        found = evidence.read_runs(page, trust)
        for version in versions:
            for device, report in found.reports.get(version, {}).items():
                tally.vote(version, device, report)
            if version in found.unsigned:
                tally.unsigned.setdefault(version, set()).update(found.unsigned[version])
            count = found.unverified_count(version)
            if count:
                tally.unverified[version] = tally.unverified.get(version, 0) + count
        if aliases is not None:
            for version, devices in behind_by_version(page, aliases, found, trust, staged).items():
                tally.behind.setdefault(version, set()).update(devices)
        if counter.over:
            break
    return tally


def age_note(tags: dict[str, str], now_ms: int | None = None) -> str:
    """How old the stored aggregates are, from the model's watermark, and STALE past the timer's interval."""
    mark = Watermark.from_tags(tags)
    age = mark.age_s(now_ms)
    if age is None:
        return "fleet aggregates as last stored: no `edgeq aggregate` pass recorded on the model (STALE: run it on a timer)"
    when = datetime.fromtimestamp(mark.at_ms / 1000, timezone.utc).isoformat(timespec="seconds")
    text = f"fleet aggregates as of the last `edgeq aggregate` pass, {_span(age)} ago ({when})"
    if mark.stale(now_ms):
        text += (f" — STALE: past its {_span(mark.every_s)} timer; reports since then are not in them "
                 f"(is the timer running? `edgeq aggregate MODEL` brings them up to date)")
    return text


def _span(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit}" if unit != "h" or seconds >= 36000 else f"{seconds / size:.1f} h"
    return f"{seconds:.0f} s"


def _now_ms() -> int:
    return int(time.time() * 1000)
